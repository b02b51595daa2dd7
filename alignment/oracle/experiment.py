"""The oracle experiment, stage by stage: SFT on the grammar's reviews, preference pairs sampled
from the SFT policy and labelled by the oracle, each alignment method trained by the platform's
own jobs (`launch_training`), and every policy scored against the SFT policy on held-out prompts.

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
from alignment.oracle import task

# A constant question for the AI-feedback judge: the preference the oracle encodes, in words.
JUDGE_QUESTION = "Which response is the more positive review of the product?"


# On a shared CPU, torch's OpenMP threads spin while they wait and a busy core turns a 0.1 s
# training step into seconds; passive waiting costs nothing on a quiet machine. The training
# jobs inherit this process's environment.
@dataclass(frozen=True)
class OracleSettings:
    """The task's sizes and noise; the training methods' settings live in the PipelineConfig."""

    seed: int = 0
    held_out_fraction: float = 0.2  # share of prompts held out for evaluation
    sft_per_prompt: int = 16  # grammar reviews per training prompt in the SFT data
    pairs_per_prompt: int = 8  # sampled preference pairs per training prompt
    held_out_pairs_per_prompt: int = 4  # pairs per held-out prompt (reward-model accuracy)
    eval_samples_per_prompt: int = 8  # policy samples per held-out prompt
    bt_temperature: float = 0.1  # Bradley-Terry noise of the oracle's labels
    max_new_tokens: int = 24
    device: str = "cpu"


@dataclass
class Prepared:
    """What every method starts from."""

    workdir: Path
    base_model: Path
    sft_model: Path
    sft_data: Path
    preferences: Path  # oracle-labelled pairs sampled from the SFT policy (training prompts)
    held_out_pairs: Path  # the same on held-out prompts
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

    split = task.split_prompts(settings.held_out_fraction)
    prompts = [p for p in split.train for _ in range(settings.pairs_per_prompt)]
    held = [p for p in split.held_out for _ in range(settings.held_out_pairs_per_prompt)]
    if policy is not None:
        a, b = sample_pairs(policy, prompts, settings, settings.seed)
        ha, hb = sample_pairs(policy, held, settings, settings.seed + 1)
    else:
        rng = random.Random(f"pairs:{settings.seed}")

        def draw(items: list[str]) -> list[str]:
            return [
                task.review(task.product_of(p), rng.choice(task.SENTIMENTS), rng) for p in items
            ]

        a, b, ha, hb = draw(prompts), draw(prompts), draw(held), draw(held)
    out_dir = Path(out_dir)
    return {
        "sft": write_records(
            task.sft_records(split.train, settings.sft_per_prompt, settings.seed),
            out_dir / "sft.jsonl",
        ),
        "preferences": write_records(
            task.label_pairs(prompts, a, b, settings.bt_temperature, settings.seed),
            out_dir / "preferences.jsonl",
        ),
        "held_out_preferences": write_records(
            task.label_pairs(held, ha, hb, settings.bt_temperature, settings.seed + 1),
            out_dir / "held_out_preferences.jsonl",
        ),
    }


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
    split = task.split_prompts(settings.held_out_fraction)
    sft_data = write_records(
        task.sft_records(split.train, settings.sft_per_prompt, settings.seed),
        workdir / "sft.parquet",
    )
    seconds["base_model"] = time.perf_counter() - started
    _log(
        f"base model {base}; {len(split.train)} training and {len(split.held_out)} held-out prompts"
    )

    sft = launch_training("sft", cfg, base, sft_data, workdir / "sft", on_progress=on_progress)
    seconds["sft"] = sft.wall_seconds

    started = time.perf_counter()
    prompts = [p for p in split.train for _ in range(settings.pairs_per_prompt)]
    held = [p for p in split.held_out for _ in range(settings.held_out_pairs_per_prompt)]
    a, b = sample_pairs(sft.output_dir, prompts, settings, settings.seed)
    ha, hb = sample_pairs(sft.output_dir, held, settings, settings.seed + 1)
    records = task.label_pairs(prompts, a, b, settings.bt_temperature, settings.seed)
    held_records = task.label_pairs(held, ha, hb, settings.bt_temperature, settings.seed + 1)
    preferences = write_records(records, workdir / "preferences.parquet")
    held_out_pairs = write_records(held_records, workdir / "held_out_pairs.parquet")
    seconds["label"] = time.perf_counter() - started
    agreement = task.label_agreement(records)
    _log(f"{len(records)} labelled pairs (agreement with the noiseless oracle {agreement:.3f})")
    return Prepared(
        workdir, base, sft.output_dir, sft_data, preferences, held_out_pairs, agreement, seconds
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
    """The SFT policy's samples on the held-out prompts: what every policy is compared with."""

    prompts: list[str]
    rewards: Any  # np.ndarray of oracle rewards


def baseline(sft_model: Path, settings: OracleSettings) -> Baseline:
    """Sample the SFT policy once on the held-out prompts (its own seed)."""
    from alignment.oracle.evaluate import load_policy, sample

    split = task.split_prompts(settings.held_out_fraction)
    prompts = [p for p in split.held_out for _ in range(settings.eval_samples_per_prompt)]
    model, tokenizer = load_policy(sft_model, settings.device)
    samples = sample(model, tokenizer, prompts, settings.max_new_tokens, settings.seed + 1000)
    return Baseline(prompts, samples.rewards)


def evaluate(
    policy: Path, sft_model: Path, base: Baseline, settings: OracleSettings
) -> dict[str, Any]:
    """Oracle reward, win rate and KL against the SFT policy, text statistics of `policy`."""
    from alignment.oracle.evaluate import evaluate_policy

    return evaluate_policy(
        policy,
        sft_model,
        base.prompts,
        base.rewards,
        settings.max_new_tokens,
        seed=settings.seed + 2000,
        device=settings.device,
    )


def reward_model_accuracy(reward_model: Path, pairs_path: Path, device: str = "cpu") -> dict:
    """Pairwise accuracy of a reward model on held-out pairs: against the oracle's noiseless
    order (pairs of equal oracle score left out) and against the noisy labels."""
    from alignment.evaluation.judges import RewardModelJudge

    records = read_records(pairs_path)
    judge = RewardModelJudge(reward_model, device=device, batch_size=64)
    try:
        prompts = [r["prompt"] for r in records]
        chosen = judge.score(prompts, [r["chosen"][-1]["content"] for r in records])
        rejected = judge.score(prompts, [r["rejected"][-1]["content"] for r in records])
    finally:
        judge.close()
    decided = [
        (c - j) * (r["score_chosen"] - r["score_rejected"]) > 0
        for r, c, j in zip(records, chosen, rejected, strict=True)
        if r["score_chosen"] != r["score_rejected"]
    ]
    return {
        "accuracy_vs_oracle": sum(decided) / len(decided) if decided else float("nan"),
        "accuracy_vs_labels": sum(c > j for c, j in zip(chosen, rejected, strict=True))
        / max(len(records), 1),
        "pairs_with_an_oracle_order": len(decided),
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
        # a is the oracle-labelled chosen; the judge keeps it with probability p
        keep = p >= 0.5
        chosen, rejected = (a, b) if keep else (b, a)
        sc, sr = (
            (r["score_chosen"], r["score_rejected"])
            if keep
            else (r["score_rejected"], r["score_chosen"])
        )
        meta = {"task": "oracle-reviews", "kind": "ai-feedback", "p_chosen": max(p, 1 - p)}
        prompt = r["prompt"][-1]["content"]
        relabelled.append(task.canonical_record(prompt, chosen, rejected, sc, sr, meta))
    return write_records(relabelled, out), task.label_agreement(relabelled)
