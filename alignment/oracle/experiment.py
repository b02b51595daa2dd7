"""The oracle experiment, stage by stage: SFT on the grammar's reviews, preference pairs sampled
from the SFT policy and labelled by the oracle, each alignment method trained by the platform's
own jobs (`launch_training`), and every policy scored against the SFT policy on held-out prompts:
on the validation prompts to choose each method's hyperparameters (`select_on_validation`), on
the test prompts (which include products never seen in training) to report the chosen run.

Each stage is a function with explicit inputs and outputs (folders, Parquet files), so the
benchmark, the CLI and the tests compose the same pieces.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.config import PipelineConfig
from alignment.oracle import flaws, task

# A constant question for the AI-feedback judge: the preference the oracle encodes, in words.
JUDGE_QUESTION = "Which response is the more positive review of the product?"


# On a shared CPU, torch's OpenMP threads spin while they wait and a busy core turns a 0.1 s
# training step into seconds; passive waiting costs nothing on a quiet machine. The training
# jobs inherit this process's environment.
@dataclass(frozen=True)
class OracleSettings:
    """The task's sizes and noise; the training methods' settings live in the PipelineConfig."""

    seed: int = 0
    validation_fraction: float = 0.15  # share of the training products' prompts for validation
    test_fraction: float = 0.15  # share of the training products' prompts for the test split
    test_product_fraction: float = 0.2  # share of products held out (test split only)
    sft_per_prompt: int = 16  # grammar reviews per training prompt in the SFT data
    pairs_per_prompt: int = 8  # sampled preference pairs per training prompt
    test_pairs_per_prompt: int = 4  # pairs per test prompt (reward-model accuracy)
    eval_samples_per_prompt: int = 8  # policy samples per validation or test prompt
    bt_temperature: float = 0.1  # Bradley-Terry noise of the oracle's labels
    max_new_tokens: int = 24
    device: str = "cpu"
    # the planted-flaw tasks (alignment.oracle.flaws): reviews, reward_hacking or sycophancy
    task: str = "reviews"
    filler_strength: float = 0.5  # reward_hacking: labeller's bonus per filler phrase
    length_strength: float = 0.0  # reward_hacking: labeller's bonus per word
    filler_rate: float = 0.3  # reward_hacking: share of demonstrations with filler
    sycophancy_strength: float = 0.8  # sycophancy: weight of agreeing with the stated opinion

    def split(self) -> task.Split:
        return task.split_prompts(
            self.validation_fraction, self.test_fraction, self.test_product_fraction
        )


@dataclass
class Prepared:
    """What every method starts from."""

    workdir: Path
    base_model: Path
    sft_model: Path
    sft_data: Path
    preferences: Path  # oracle-labelled pairs sampled from the SFT policy (training prompts)
    test_pairs: Path  # the same on test prompts
    label_agreement: float  # share of training labels that agree with the noiseless oracle
    seconds: dict[str, float] = field(default_factory=dict)


def with_overrides(cfg: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """A copy of `cfg` with dotted-path fields replaced, e.g. {"train.dpo.beta": 0.2}."""
    tree = cfg.model_dump(mode="json")
    for key, value in overrides.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return PipelineConfig.model_validate(tree)


def write_records(records: Sequence[dict], path: Path) -> Path:
    """Canonical records as Parquet (the training jobs' input) or JSONL, written atomically."""
    from alignment.workspace import atomic_write_bytes, atomic_write_text

    path = Path(path)
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return atomic_write_text(path, text)
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from alignment.data.formats import records_schema

    schema = pa.schema([f for f in records_schema() if f.name != "score_raw"])
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(list(records), schema=schema), buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def read_records(path: Path) -> list[dict]:
    """Canonical records from a Parquet or JSONL file."""
    path = Path(path)
    if path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _log(message: str) -> None:
    print(f"[oracle] {message}", file=sys.stderr, flush=True)


def _quiet(event: dict) -> None:
    """Progress of a training job: only its last step is worth a line here."""
    if event.get("step") == event.get("max_steps"):
        _log(event["message"])


# --- stages ------------------------------------------------------------------------------


def demonstration_data(
    out_dir: Path, settings: OracleSettings, policy: Path | None = None
) -> dict[str, Path]:
    """The built-in demonstration dataset: SFT records and oracle-labelled preference pairs.

    Pairs are two responses per prompt: sampled from `policy` when given, else drawn from the
    review grammar itself (so no model is needed). Writes JSONL files; returns their paths.
    """
    import random

    train_prompts, prompts, held = task_prompt_sets(settings)
    if policy is not None:
        a, b = sample_pairs(policy, prompts, settings, settings.seed)
        ha, hb = sample_pairs(policy, held, settings, settings.seed + 1)
    else:
        rng = random.Random(f"pairs:{settings.seed}")

        def draw(items: list[str]) -> list[str]:
            return [flaws.draw_review(settings, p, rng) for p in items]

        a, b, ha, hb = draw(prompts), draw(prompts), draw(held), draw(held)
    out_dir = Path(out_dir)
    return {
        "sft": write_records(flaws.sft_records(settings, train_prompts), out_dir / "sft.jsonl"),
        "preferences": write_records(
            flaws.label(settings, prompts, a, b, settings.seed), out_dir / "preferences.jsonl"
        ),
        "held_out_preferences": write_records(
            flaws.label(settings, held, ha, hb, settings.seed + 1),
            out_dir / "held_out_preferences.jsonl",
        ),
    }


def task_prompt_sets(settings: OracleSettings) -> tuple[list[str], list[str], list[str]]:
    """The task's training prompts, the prompts of its training pairs (each repeated
    pairs_per_prompt times) and of its test pairs (test_pairs_per_prompt times)."""
    split = settings.split()
    train_prompts = flaws.task_prompts(settings, split.train)
    prompts = [p for p in train_prompts for _ in range(settings.pairs_per_prompt)]
    test_prompts = flaws.task_prompts(settings, split.test, seed_offset=1)
    held = [p for p in test_prompts for _ in range(settings.test_pairs_per_prompt)]
    return train_prompts, prompts, held


def sample_pairs(
    policy: Path, prompts: Sequence[str], settings: OracleSettings, seed: int
) -> tuple[list[str], list[str]]:
    """Two independent responses of `policy` to each prompt."""
    from alignment.oracle.evaluate import load_policy, sample

    model, tokenizer = load_policy(policy, settings.device)
    doubled = [p for p in prompts for _ in range(2)]
    texts = sample(model, tokenizer, doubled, settings.max_new_tokens, seed).texts
    return texts[0::2], texts[1::2]


def prepare(
    workdir: Path,
    cfg: PipelineConfig,
    settings: OracleSettings,
    on_progress: Callable[[dict], None] | None = _quiet,
) -> Prepared:
    """Base model, SFT policy, and the oracle-labelled pairs sampled from it."""
    from alignment.models import resolve_base_model
    from alignment.train.launch import launch_training
    from alignment.workspace import Workspace

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    ws = Workspace.from_config(cfg.workspace).ensure()
    base = resolve_base_model(cfg.model, ws, task.corpus(settings.seed))
    split = settings.split()
    train_prompts, prompts, held = task_prompt_sets(settings)
    sft_data = write_records(flaws.sft_records(settings, train_prompts), workdir / "sft.parquet")
    seconds["base_model"] = time.perf_counter() - started
    _log(
        f"base model {base}; {len(split.train)} training, {len(split.validation)} validation and "
        f"{len(split.test)} test prompts (products held out: {', '.join(split.test_products)})"
    )

    sft = launch_training("sft", cfg, base, sft_data, workdir / "sft", on_progress=on_progress)
    seconds["sft"] = sft.wall_seconds

    started = time.perf_counter()
    a, b = sample_pairs(sft.output_dir, prompts, settings, settings.seed)
    ha, hb = sample_pairs(sft.output_dir, held, settings, settings.seed + 1)
    records = flaws.label(settings, prompts, a, b, settings.seed)
    held_records = flaws.label(settings, held, ha, hb, settings.seed + 1)
    preferences = write_records(records, workdir / "preferences.parquet")
    test_pairs = write_records(held_records, workdir / "test_pairs.parquet")
    seconds["label"] = time.perf_counter() - started
    agreement = task.label_agreement(records)
    _log(f"{len(records)} labelled pairs (agreement with the noiseless oracle {agreement:.3f})")
    return Prepared(
        workdir, base, sft.output_dir, sft_data, preferences, test_pairs, agreement, seconds
    )


def train(
    method: str,
    prepared: Prepared,
    cfg: PipelineConfig,
    name: str,
    reward_model: Path | None = None,
    preferences: Path | None = None,
    on_progress: Callable[[dict], None] | None = _quiet,
):
    """One method from the SFT policy, as the platform's DeepSpeed job; its TrainResult."""
    from alignment.train.launch import launch_training

    return launch_training(
        method,
        cfg,
        prepared.sft_model,
        preferences or prepared.preferences,
        prepared.workdir / name,
        on_progress=on_progress,
        reward_model_path=reward_model,
    )


@dataclass
class Baseline:
    """The SFT policy's samples on one split's prompts: what every policy is compared with."""

    prompts: list[str]
    rewards: Any  # np.ndarray of oracle rewards
    split: str = "test"


def baseline(sft_model: Path, settings: OracleSettings, split: str = "test") -> Baseline:
    """Sample the SFT policy once on the 'validation' or 'test' prompts (a seed of its own)."""
    from alignment.oracle.evaluate import load_policy, sample

    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' or 'test', not {split!r}")
    prompts = [
        p for p in getattr(settings.split(), split) for _ in range(settings.eval_samples_per_prompt)
    ]
    model, tokenizer = load_policy(sft_model, settings.device)
    offset = 1000 if split == "test" else 3000
    samples = sample(model, tokenizer, prompts, settings.max_new_tokens, settings.seed + offset)
    return Baseline(prompts, samples.rewards, split)


def evaluate(
    policy: Path, sft_model: Path, base: Baseline, settings: OracleSettings
) -> dict[str, Any]:
    """Oracle reward, win rate and KL against the SFT policy, text statistics of `policy`, on
    the prompts of `base` (its split)."""
    from alignment.oracle.evaluate import evaluate_policy

    offset = 2000 if base.split == "test" else 4000
    return evaluate_policy(
        policy,
        sft_model,
        base.prompts,
        base.rewards,
        settings.max_new_tokens,
        seed=settings.seed + offset,
        device=settings.device,
    )


def select_on_validation(
    runs: Sequence[dict], kl_bound: float, min_unique: float | None = None
) -> dict | None:
    """The run with the highest validation win rate among those whose validation KL is within
    `kl_bound` and, with `min_unique`, whose validation unique-response rate is at least that
    (a collapsed policy wins against a judge it games, never as a chosen run); None when there
    is none. The test split plays no part in the choice."""
    bounded = [
        r
        for r in runs
        if r["validation"]["kl_to_sft"] <= kl_bound
        and (min_unique is None or r["validation"]["unique_response_rate"] >= min_unique)
    ]
    if not bounded:
        return None
    return max(bounded, key=lambda r: r["validation"]["win_rate_vs_sft"])


def reward_model_accuracy(reward_model: Path, pairs_path: Path, device: str = "cpu") -> dict:
    """Pairwise accuracy of a reward model on held-out pairs: against the oracle's noiseless
    order (pairs of equal oracle reward left out) and against the noisy labels; a tie in the
    reward model's scores counts half. The interval resamples prompts."""
    import numpy as np

    from alignment.evaluation.judges import RewardModelJudge
    from alignment.oracle.evaluate import cluster_bootstrap_ci

    records = read_records(pairs_path)
    judge = RewardModelJudge(reward_model, device=device, batch_size=64)
    try:
        prompts = [r["prompt"] for r in records]
        chosen = judge.score(prompts, [r["chosen"][-1]["content"] for r in records])
        rejected = judge.score(prompts, [r["rejected"][-1]["content"] for r in records])
    finally:
        judge.close()
    margins = np.asarray(chosen, float) - np.asarray(rejected, float)
    oracle = np.array([task.oracle_scores(r) for r in records], float).reshape(-1, 2)
    order = np.sign(oracle[:, 0] - oracle[:, 1])
    decided = order != 0
    vs_oracle = np.where(margins == 0, 0.5, (margins * order > 0).astype(float))[decided]
    vs_labels = np.where(margins == 0, 0.5, (margins > 0).astype(float))
    texts = [r["prompt"][-1]["content"] for r in records]
    decided_texts = [t for t, d in zip(texts, decided, strict=True) if d]
    return {
        "accuracy_vs_oracle": float(vs_oracle.mean()) if vs_oracle.size else float("nan"),
        "accuracy_vs_oracle_ci": list(cluster_bootstrap_ci(vs_oracle, decided_texts))
        if vs_oracle.size
        else None,
        "accuracy_vs_labels": float(vs_labels.mean()) if vs_labels.size else float("nan"),
        "pairs_with_an_oracle_order": int(decided.sum()),
        "pairs": len(records),
    }


def ai_feedback_preferences(
    judge_model: Path, prepared: Prepared, out: Path, question: str = JUDGE_QUESTION
) -> tuple[Path, float]:
    """The same sampled pairs, labelled by the platform's AI-feedback judge instead of the oracle.

    The judge answers `question` as a multiple choice, both orders averaged
    (`alignment.cai.feedback.judge_pairs`); the oracle scores are kept, so the judge's agreement
    with the oracle is measured. Returns the Parquet file and that agreement.
    """
    from alignment.cai.feedback import judge_pairs
    from alignment.oracle.evaluate import load_policy

    records = read_records(prepared.preferences)
    model, tokenizer = load_policy(judge_model)
    pairs = [(r["chosen"][-1]["content"], r["rejected"][-1]["content"]) for r in records]
    p_a = judge_pairs(
        model,
        tokenizer,
        [r["prompt"] for r in records],
        [a for a, _ in pairs],
        [b for _, b in pairs],
        [question] * len(records),
        batch_size=32,
        max_length=512,
    )
    relabelled = []
    for r, (a, b), p in zip(records, pairs, p_a, strict=True):
        # a is the oracle-labelled chosen; the judge prefers it with probability p
        keep = p >= 0.5
        chosen, rejected = (a, b) if keep else (b, a)
        oracle_a, oracle_b = task.oracle_scores(r)
        p_chosen = max(p, 1.0 - p)
        meta = {
            "task": "oracle-reviews",
            "kind": "ai-feedback",
            "oracle_chosen": oracle_a if keep else oracle_b,
            "oracle_rejected": oracle_b if keep else oracle_a,
        }
        prompt = r["prompt"][-1]["content"]
        # the scores are what the judge said: its probability, usable as a soft label
        relabelled.append(
            task.canonical_record(prompt, chosen, rejected, p_chosen, 1.0 - p_chosen, meta)
        )
    return write_records(relabelled, out), task.label_agreement(relabelled)
