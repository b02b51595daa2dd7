"""Constitutional AI, both phases: critique/revision → SFT data → SFT → AI feedback → preference
data → ingest/validate/version → reward model + PPO, or DPO (as ``train.methods`` says).

``cai_review_flow`` pulls a sample of AI-labelled pairs for a person, pauses for their verdicts
(answered in the Prefect UI, or given as a filled CSV), reports the agreement rate and versions
the corrected pairs as a new data version.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.input import RunInput

from alignment.cai.critique import SLResult, require_sft_rows, run_sl_phase
from alignment.cai.feedback import LabelResult, label_prompts, require_pairs, rl_training_config
from alignment.cai.generate import GenerationSettings, load_model, open_generator
from alignment.cai.prompts import collect_prompts
from alignment.cai.review import ReviewResult, apply_review, read_verdicts, sample_for_review
from alignment.config import PipelineConfig, load_config
from alignment.constitution import Constitution, load_constitution, store_constitution
from alignment.data.ingest import ingest_file
from alignment.data.version import DataVersion, materialize, version_dataset
from alignment.models import resolve_base_model
from alignment.train.launch import TrainResult, launch_training
from alignment.workspace import Workspace, unique_dir
from flows.ingest import data_versioning_limit


@dataclass
class CAIResult:
    run_dir: Path
    constitution_hash: str
    sl: SLResult
    sft_data: DataVersion
    sl_model: Path  # the SFT-trained model, or the base model when SFT training is off
    rl: LabelResult
    preference_data: DataVersion
    training: dict[str, TrainResult] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)


@task(name="constitution")
def constitution_task(cfg: PipelineConfig, ws: Workspace) -> Constitution:
    constitution = load_constitution(cfg.cai.constitution)
    store_constitution(constitution, ws.root / "constitutions")
    return constitution


@task(name="cai-sl-phase")
def sl_task(
    cfg: PipelineConfig, model: Path, prompts: list[dict], constitution: Constitution, out: Path
) -> SLResult:
    settings = GenerationSettings.from_config(cfg.cai, cfg.cai.sl_temperature)
    with open_generator(model, cfg.cai.num_processes) as generator:
        result = run_sl_phase(
            generator, prompts, constitution, out, settings, cfg.cai.revision_rounds,
            cfg.cai.few_shot, cfg.cai.seed, model_name=str(model),
        )  # fmt: skip
    _report(f"SL phase: {result.rows} SFT rows of {result.prompts} prompts; "
            f"{result.empty_summary()}", any(result.empty.values()))  # fmt: skip
    return require_sft_rows(result)


@task(name="cai-ingest-and-version")
def ingest_version_task(
    cfg: PipelineConfig, ws: Workspace, dataset: str, source: Path, out: Path
) -> DataVersion:
    ingest_cfg = cfg.ingest.model_copy(update={"dataset": dataset, "format": "auto"})
    ingest_file(source, out, ingest_cfg, cfg.validation)
    with data_versioning_limit(dataset):
        return version_dataset(ws, dataset, out)


@task(name="cai-train")
def train_task(
    method: str,
    cfg: PipelineConfig,
    ws: Workspace,
    model: Path,
    version: DataVersion,
    out: Path,
    reward_model: Path | None = None,
) -> TrainResult:
    logger = get_run_logger()
    data = materialize(ws, version, out / "data" / "accepted.parquet")
    return launch_training(
        method, cfg, model, data, out / method,
        on_progress=lambda p: logger.info(p.get("message") or str(p)),
        reward_model_path=reward_model,
    )  # fmt: skip


@task(name="cai-rl-feedback")
def label_task(
    cfg: PipelineConfig,
    policy: Path,
    judge: Path,
    prompts: list[dict],
    constitution: Constitution,
    out: Path,
) -> LabelResult:
    settings = GenerationSettings.from_config(cfg.cai, cfg.cai.rl_temperature)
    judge_model, judge_tokenizer = load_model(judge)
    with open_generator(policy, cfg.cai.num_processes) as generator:
        result = label_prompts(
            generator, judge_model, judge_tokenizer, prompts, constitution, out, settings,
            judge_name=str(judge), seed=cfg.cai.seed, judge_batch_size=cfg.cai.judge_batch_size,
            chain_of_thought=cfg.cai.chain_of_thought,
            cot_max_new_tokens=cfg.cai.cot_max_new_tokens, clamp=cfg.cai.cot_clamp,
        )  # fmt: skip
    _report(f"RL phase: {result.pairs} AI-labelled pairs; {result.skipped_summary()}",
            bool(result.skipped))  # fmt: skip
    return require_pairs(result)


def _report(line: str, warn: bool) -> None:
    logger = get_run_logger()
    (logger.warning if warn else logger.info)(line)


@flow(name="constitutional-ai", log_prints=True)
def cai_flow(config_path: str | None = None, overrides: list[str] | None = None) -> CAIResult:
    """Both CAI phases end to end; training stages follow cai.train_sft / cai.train_rl."""
    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    run = unique_dir(ws.runs, "cai")
    times: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        times[name] = round(time.perf_counter() - start, 2)
        return out

    constitution = timed("constitution", constitution_task, cfg, ws)
    prompts = collect_prompts(
        cfg.cai.prompts, cfg.cai.red_team_packages, cfg.cai.package_prompt_limit,
        cfg.cai.max_prompts, cfg.cai.prompts_per_kind,
    )  # fmt: skip
    base = timed("base_model", resolve_base_model, cfg.model, ws)
    sl = timed("sl_phase", sl_task, cfg, base, prompts, constitution, run / "sl")
    sft_data = timed(
        "sl_version", ingest_version_task, cfg, ws, cfg.cai.sl_dataset, sl.sft_path,
        run / "sl" / "ingest",
    )  # fmt: skip
    training: dict[str, TrainResult] = {}
    sl_model = base
    if cfg.cai.train_sft:
        training["sft"] = timed("train_sft", train_task, "sft", cfg, ws, base, sft_data, run / "sl")
        sl_model = training["sft"].output_dir
    judge = cfg.cai.feedback_model or base
    rl = timed("rl_feedback", label_task, cfg, sl_model, judge, prompts, constitution,
               run / "rl" / "labelled.jsonl")  # fmt: skip
    preference_data = timed(
        "rl_version", ingest_version_task, cfg, ws, cfg.cai.rl_dataset, rl.path,
        run / "rl" / "ingest",
    )  # fmt: skip
    if cfg.cai.train_rl:
        start_from, reward_model = sl_model, None
        rl_cfg = rl_training_config(cfg)  # the judge's probabilities as soft labels
        for method in [m for m in cfg.train.methods if m != "sft"]:
            result = timed(
                f"train_{method}", train_task, method, rl_cfg, ws, start_from, preference_data,
                run / "rl", reward_model,
            )  # fmt: skip
            training[method] = result
            if method == "reward":
                reward_model = result.output_dir
            else:
                start_from = result.output_dir
    result = CAIResult(
        run, constitution.hash, sl, sft_data, sl_model, rl, preference_data, training, times
    )
    create_markdown_artifact(
        key="cai-result", markdown=_markdown(result), description="What the CAI run produced"
    )
    return result


def _cell(text: str, width: int = 240) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def _markdown(result: CAIResult, samples: int = 4) -> str:
    rows = [
        ("constitution hash", result.constitution_hash),
        ("SL prompts / SFT rows", f"{result.sl.prompts} / {result.sl.rows}"),
        ("SL empty generations", result.sl.empty_summary().split(": ", 1)[1]),
        ("SFT data version", result.sft_data.id),
        ("audit", str(result.sl.audit_path)),
        ("AI-labelled pairs (skipped)", f"{result.rl.pairs} ({result.rl.skipped})"),
        ("RL skipped prompts", result.rl.skipped_summary().split(": ", 1)[1]),
        ("preference data version", result.preference_data.id),
        *[(f"model {m}", str(t.output_dir)) for m, t in result.training.items()],
        *[(f"time {k}", f"{v:.1f}s") for k, v in result.stage_seconds.items()],
    ]
    lines = ["| item | value |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in rows)]
    audit = [json.loads(x) for x in result.sl.audit_path.read_text(encoding="utf-8").splitlines()]
    revised = [r for r in audit if r.get("outcome") == "sft"][:samples]
    lines += [
        "",
        f"First {len(revised)} revised prompts of the audit (last revising round shown):",
        "",
        "| kind | prompt | initial answer | principle | critique | revision |",
        "|---|---|---|---|---|---|",
    ]
    for r in revised:
        last = [x for x in r["rounds"] if x["revision"]][-1]
        cells = (r["kind"], r["prompt"], r["initial_response"], last["principle"],
                 last["critique"], last["revision"])  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


class ReviewInput(RunInput):
    """Verdicts of a reviewer: pair id -> agree | flip (ids from the review CSV)."""

    verdicts: dict[str, Literal["agree", "flip"]]


def _review_markdown(sheet: Path, width: int = 160) -> str:
    """The review sheet as a table a person can read in the Prefect UI."""
    import csv

    with sheet.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    lines = [
        f"Review sheet `{sheet}` ({len(rows)} pairs). Resume the run with verdicts "
        "`{pair id: agree | flip}`: *flip* when the AI chose the worse response.",
        "",
        "| id | principle | P(chosen) | prompt | AI chose | AI rejected |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['id']} | {r['principle']} | {r['p_chosen']} | {_cell(r['prompt'], width)} "
        f"| {_cell(r['chosen'], width)} | {_cell(r['rejected'], width)} |"
        for r in rows
    ]
    return "\n".join(lines)


@flow(name="cai-review", log_prints=True)
def cai_review_flow(
    labelled: str,
    config_path: str | None = None,
    overrides: list[str] | None = None,
    review_csv: str | None = None,
    timeout_seconds: int = 86_400,
) -> ReviewResult:
    """Sample AI-labelled pairs for review; verdicts from a filled CSV or a Prefect pause;
    report the agreement and version the corrected pairs."""
    from prefect.flow_runs import pause_flow_run

    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    out = unique_dir(ws.staging, "cai-review")
    if review_csv:
        verdicts = read_verdicts(review_csv)
    else:
        sheet = sample_for_review(labelled, out / "review.csv", cfg.cai.review_sample_size,
                                  cfg.cai.seed)  # fmt: skip
        create_markdown_artifact(
            key="cai-review-sample",
            markdown=_review_markdown(sheet),
            description="AI-labelled pairs to review before resuming the run",
        )
        answer = pause_flow_run(
            wait_for_input=ReviewInput.with_initial_data(
                description="Verdicts for the pairs in the cai-review-sample artifact: "
                "{pair id: 'agree' | 'flip'}; pairs left out are not reviewed.",
                verdicts={},
            ),
            timeout=timeout_seconds,
        )
        verdicts = answer.verdicts
    result = apply_review(labelled, verdicts, out / "reviewed.jsonl")
    print(f"AI-human agreement {result.agreement_rate} over {result.reviewed} pairs")
    if result.out_path is not None and result.flipped:
        ingest_version_task(cfg, ws, cfg.cai.rl_dataset, result.out_path, out / "ingest")
    return result
