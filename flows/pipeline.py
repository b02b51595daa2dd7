"""The main job: preference file → validated, versioned data → SFT → DPO → evaluated, registered model."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from alignment.config import PipelineConfig, load_config
from alignment.data.ingest import IngestResult, summary_lines
from alignment.data.splits import split_by_prompt
from alignment.data.version import DataVersion, find_version, materialize, read_version_file
from alignment.errors import ConfigError, VersioningError
from alignment.registry import RegisteredVersion
from alignment.runs import RunDir
from alignment.train.launch import TrainResult, launch_training
from alignment.workspace import Workspace
from flows.ingest import ingest_task, version_task
from flows.subprocess_stage import run_cli_stage

RL_METHODS = ("ppo", "rloo", "grpo")


@dataclass
class PipelineResult:
    run_dir: Path
    data_version: DataVersion
    ingest: IngestResult | None  # None when training from an already recorded data version
    training: dict[str, TrainResult]
    evaluation: dict[str, float]
    registered: RegisteredVersion
    mlflow_run_id: str
    stage_seconds: dict[str, float] = field(default_factory=dict)


@task(name="split-data")
def split_task(
    ws: Workspace, version: DataVersion, run: RunDir, eval_fraction: float
) -> tuple[Path, Path]:
    import pandas as pd

    from alignment.workspace import atomic_write_bytes

    # read the exact bytes of this version back through DVC, not whatever is checked out
    accepted = materialize(ws, version, run.root / "data" / "accepted.parquet")
    report = json.loads(read_version_file(ws, version, "report.json"))
    groups = (report.get("near_duplicates") or {}).get("split_buckets")
    train, evaluation = split_by_prompt(pd.read_parquet(accepted), eval_fraction, groups)
    for frame, path in ((train, run.train_data), (evaluation, run.eval_data)):
        atomic_write_bytes(path, frame.to_parquet(index=False))
    return run.train_data, run.eval_data


@task(name="prepare-base-model")
def base_model_task(run: RunDir) -> Path:
    out = run.root / "base_model.json"
    args = ["model", "prepare", "--config", str(run.config), "--corpus", str(run.train_data)]
    return Path(run_cli_stage([*args, "--json", str(out)], out)["path"])


@task(name="train", retries=1, retry_delay_seconds=2)
def train_task(
    method: str,
    cfg: PipelineConfig,
    model_path: Path,
    run: RunDir,
    reward_model_path: Path | None = None,
    ws: Workspace | None = None,
    mlflow_run_id: str | None = None,
) -> TrainResult:
    from prefect.runtime import task_run

    from alignment.registry import LiveMetrics

    logger = get_run_logger()
    # a retried task continues from the job's last checkpoint instead of starting over
    resume = (task_run.run_count or 1) > 1
    if resume:
        logger.warning("retrying %s: resuming from its last checkpoint", method)
    live = (
        LiveMetrics(ws.tracking_uri, mlflow_run_id, method, warn=logger.warning)
        if ws is not None and mlflow_run_id
        else None
    )

    def progress(p: dict) -> None:
        logger.info(p.get("message") or json.dumps(p))
        if live is not None and p.get("logs"):
            live(p.get("step") or 0, p["logs"])

    result = launch_training(
        method,
        cfg,
        model_path,
        run.train_data,
        run.job(method),
        eval_path=run.eval_data,
        on_progress=progress,
        reward_model_path=reward_model_path,
        resume=resume,
    )
    result.live_logged = live is not None and live.complete and live.logged > 0
    return result


@task(name="fetch-champion")
def champion_task(cfg: PipelineConfig, ws: Workspace, run: RunDir) -> Path | None:
    """The current champion's checkpoint, to evaluate the candidate against (None at first)."""
    from alignment import registry

    registry.connect(ws, cfg.registry.experiment)
    holder = cfg.registry.production_model or cfg.registry.model_name  # where @champion lives
    return registry.download_checkpoint(holder, registry.CHAMPION, run.root / "champion")


@task(name="evaluate")
def evaluate_task(
    run: RunDir,
    policy: Path,
    reference: Path,
    champion: Path | None = None,
    reward_model: Path | None = None,
) -> dict[str, float]:
    report_dir = run.root / "evaluation"
    args = ["evaluate", "--suite", "--config", str(run.config)]
    args += ["--policy", str(policy), "--reference", str(reference)]
    args += ["--data", str(run.eval_data), "--out", str(run.evaluation)]
    args += ["--report-dir", str(report_dir)]
    for flag, path in (("--champion", champion), ("--reward-model", reward_model)):
        if path:
            args += [flag, str(path)]
    metrics = run_cli_stage(args, run.evaluation)
    table = report_dir / "table.md"
    if table.exists():
        create_markdown_artifact(
            key="evaluation", markdown=table.read_text(), description="Candidate vs champion"
        )
    return metrics


@task(name="register")
def register_task(
    cfg: PipelineConfig,
    ws: Workspace,
    run: RunDir,
    version: DataVersion,
    base_model: Path,
    training: dict[str, TrainResult],
    evaluation: dict[str, float],
    mlflow_run_id: str | None = None,
    judge: str = "",
) -> tuple[RegisteredVersion, str]:
    import mlflow

    from alignment import registry

    experiment_id = registry.connect(ws, cfg.registry.experiment)
    # a retry (MLflow was unreachable, the process died) must not leave two versions, or one
    # half-made: keep what an earlier attempt finished, delete what it left half done
    earlier = registry.settle_earlier_attempt(cfg.registry.model_name, experiment_id, run.name)
    if earlier is not None:
        print(f"version {earlier.version} was registered by an earlier attempt; keeping it")
        return earlier, earlier.run_id
    final_method = [m for m in cfg.train.methods if m != "reward"][-1]
    # the run opened before training (metrics streamed into it), or a new one
    opened = (
        mlflow.start_run(run_id=mlflow_run_id)
        if mlflow_run_id
        else mlflow.start_run(experiment_id=experiment_id, run_name=run.name)
    )
    with opened as active:
        mlflow.log_params(
            {k: str(v)[:500] for k, v in registry.flatten(cfg.model_dump(mode="json")).items()}
        )
        mlflow.log_artifact(str(run.config), artifact_path="config")
        report = materialize(ws, version, run.root / "data" / "report.json", name="report.json")
        mlflow.log_artifact(str(report), artifact_path="data")
        for method, result in training.items():
            if not result.live_logged:
                registry.log_history(result.history, method)
            mlflow.log_metrics(
                {
                    f"{method}/final_{k}": float(v)
                    for k, v in result.metrics.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
            )
            mlflow.log_artifact(str(result.log_path), artifact_path=f"logs/{method}")
            for report in ("guard.json", "guard.png"):  # the over-optimisation guard's record
                if (result.output_dir.parent / report).is_file():
                    mlflow.log_artifact(
                        str(result.output_dir.parent / report), artifact_path=f"guard/{method}"
                    )
        mlflow.log_metrics({f"eval/{k}": v for k, v in evaluation.items()})
        if (run.root / "evaluation").is_dir():
            # the table, every sampled response with its scores, and the plots
            mlflow.log_artifacts(str(run.root / "evaluation"), artifact_path="evaluation")
        lineage = {
            "data_version": version.id,
            "dataset": version.dataset,
            "git_commit": registry.git_commit(),
            "method": final_method,
            "methods": ",".join(cfg.train.methods),
            "base_model": cfg.model.source if cfg.model.source != "local" else str(cfg.model.path),
            "config_hash": cfg.digest(),
        }
        # the run carries the whole lineage; the version what an ops person scans the registry
        # for, plus at most five headline figures (every metric is on the run, as eval/...)
        mlflow.set_tags(
            {
                **lineage,
                "data_tag": version.tag,
                "base_model_path": str(base_model),
                "pipeline_run": run.name,
                "judge": judge or "-",
            }
        )
        registered = registry.register_policy(
            _final_policy(cfg, training),
            cfg.registry.model_name,
            {**lineage, **registry.headline_tags(evaluation)},
        )
    return registered, active.info.run_id


@task(name="gate-first-version")
def first_champion_task(
    cfg: PipelineConfig, ws: Workspace, registered: RegisteredVersion
) -> RegisteredVersion:
    """With no champion yet, the gate's absolute conditions decide whether this one becomes it.

    A version that fails them stays a challenger; with a champion, nothing happens here (the
    retrain flow or ``models promote`` compare the two).
    """
    from dataclasses import replace

    from alignment import promotion, registry
    from alignment.champion import ChampionSlot
    from alignment.errors import PermissionDenied

    registry.connect(ws, cfg.registry.experiment)
    production = cfg.registry.production_model
    champion = ChampionSlot.of(registered.name, production).holder(registry.CHAMPION)
    if champion == registered.version:  # an earlier attempt of this task promoted it
        tags = registry.model_version(registered.name, registered.version).tags
        return replace(registered, alias=registry.CHAMPION, decision=tags.get("gate.decision"))
    if champion is not None:
        return registered
    policy, path = promotion.load_policy(cfg.registry.gate_policy)
    try:
        decision = promotion.promote(
            ws,
            registered.name,
            registered.version,
            policy,
            policy_path=path,
            actor="pipeline",
            reason="first version: no champion yet, the gate's absolute conditions decide",
            production=production,
        )
    except PermissionDenied as exc:
        # the training account registers; promoting is the ops account's (registry roles)
        get_run_logger().warning(
            "%s version %s stays a challenger: %s", registered.name, registered.version, exc
        )
        return registered
    print(decision.table())
    alias = registry.CHAMPION if decision.promoted else registry.CHALLENGER
    return replace(registered, alias=alias, decision=decision.decision)


def judge_used(cfg: PipelineConfig, reward_model: Path | None) -> str:
    """What judged the candidate in evaluation, in words for the registry."""
    judge = (
        "the reward model trained in this run (beside the candidate: not independent)"
        if reward_model is not None
        else "none (no reward or judge model: no win rates)"
    )
    return f"{judge}; refusals by {cfg.evaluation.refusal_detector}"


def prepare_data(
    cfg: PipelineConfig,
    ws: Workspace,
    times: dict[str, float],
    landing_files: list[dict] | None = None,
):
    """Ingest, validate and version the configured input; return (ingest result, version).

    ``landing_files`` (path, size, sha256 of the raw files read) are recorded with the version.
    """
    if cfg.ingest.input is None:
        raise ConfigError("ingest.input is not set: name the preference file or folder to train on")
    ingest = _timed(times, "ingest+validate", ingest_task, cfg, ws, Path(cfg.ingest.input))
    create_markdown_artifact(
        key="validation-summary",
        markdown="```\n" + "\n".join(summary_lines(ingest)) + "\n```",
        description="Great Expectations validation of the preference data",
    )
    version = _timed(times, "version", version_task, ws, cfg.ingest.dataset, ingest, landing_files)
    return ingest, version


def train_and_register(
    cfg: PipelineConfig, ws: Workspace, version: DataVersion, times: dict[str, float]
) -> tuple[RunDir, dict[str, TrainResult], dict[str, float], RegisteredVersion, str]:
    """Split a recorded data version, train each configured method, evaluate and register."""
    from alignment import registry

    run = RunDir.create(ws, cfg)
    _timed(times, "split", split_task, ws, version, run, cfg.split.eval_fraction)
    base = _timed(times, "base_model", base_model_task, run)
    # opened now so that the training jobs' metrics show in MLflow while they train
    mlflow_run_id = registry.open_tracking_run(
        ws,
        cfg.registry.experiment,
        run.name,
        {"pipeline_run": run.name, "data_version": version.id, "dataset": version.dataset},
    )
    try:
        return _train_evaluate_register(cfg, ws, version, times, run, base, mlflow_run_id)
    except BaseException:
        # the run opened for live metrics must not stay RUNNING in the MLflow UI
        registry.end_tracking_run(ws, mlflow_run_id, "FAILED")
        raise


def _train_evaluate_register(
    cfg: PipelineConfig,
    ws: Workspace,
    version: DataVersion,
    times: dict[str, float],
    run: RunDir,
    base: Path,
    mlflow_run_id: str | None,
) -> tuple[RunDir, dict[str, TrainResult], dict[str, float], RegisteredVersion, str]:
    training, final, reference = _train_methods(cfg, ws, run, base, times, mlflow_run_id)
    # the tasks that talk to MLflow ride out a tracking server that is away for a while
    mlflow_retries = {
        "retries": cfg.registry.retries,
        "retry_delay_seconds": cfg.registry.retry_delay_s,
    }
    champion = _timed(
        times, "fetch_champion", champion_task.with_options(**mlflow_retries), cfg, ws, run
    )
    reward_model = training["reward"].output_dir if "reward" in training else None
    evaluation = _timed(
        times, "evaluate", evaluate_task, run, final, reference, champion, reward_model
    )
    registered, mlflow_run_id = _timed(
        times,
        "register",
        register_task.with_options(**mlflow_retries),
        cfg, ws, run, version, base, training, evaluation, mlflow_run_id,
        judge_used(cfg, reward_model),
    )  # fmt: skip
    registered = _timed(
        times,
        "gate_first_version",
        first_champion_task.with_options(**mlflow_retries),
        cfg,
        ws,
        registered,
    )
    return run, training, evaluation, registered, mlflow_run_id


def _train_methods(
    cfg: PipelineConfig,
    ws: Workspace,
    run: RunDir,
    base: Path,
    times: dict[str, float],
    mlflow_run_id: str | None = None,
) -> tuple[dict[str, TrainResult], Path, Path]:
    """Run the configured methods in order; return results, the final policy and its reference.

    Policy methods (sft, dpo, kto, ppo, rloo, grpo) continue from the policy so far; a reward
    model starts from the policy so far but does not replace it, and the RL methods after it
    score with it.
    """
    training: dict[str, TrainResult] = {}
    policy = base
    reference = base
    reward_model: Path | None = None
    for method in cfg.train.methods:
        if method in RL_METHODS and reward_model is None:
            raise ConfigError(f"train.methods: {method} needs a 'reward' stage before it")
        result = _timed(
            times,
            f"train_{method}",
            train_task,
            method,
            cfg,
            policy,
            run,
            reward_model_path=reward_model if method in RL_METHODS else None,
            ws=ws,
            mlflow_run_id=mlflow_run_id,
        )
        training[method] = result
        if method == "reward":
            reward_model = result.output_dir
            continue
        # preference methods are judged against the policy they started from (SFT, usually)
        reference = policy
        policy = result.output_dir
    if policy == base:
        raise ConfigError("train.methods has no policy-training stage (only 'reward')")
    return training, policy, reference


def _final_policy(cfg: PipelineConfig, training: dict[str, TrainResult]) -> Path:
    return training[[m for m in cfg.train.methods if m != "reward"][-1]].output_dir


def _timed(times: dict[str, float], name: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    times[name] = round(time.perf_counter() - start, 2)
    return out


@flow(name="alignment-pipeline", log_prints=True)
def alignment_pipeline(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    data_version: str | None = None,
) -> PipelineResult:
    """Read, validate, version, train (SFT then DPO), evaluate and register, in one run.

    With ``data_version``, skip ingest and train on that recorded version (a rebuild).
    """
    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    times: dict[str, float] = {}
    ingest: IngestResult | None = None
    if data_version:
        version = find_version(ws, cfg.ingest.dataset, data_version)
        if version is None:
            raise VersioningError(
                f"data version {data_version} of {cfg.ingest.dataset!r} is not recorded in "
                f"{ws.data_repo}"
            )
    else:
        ingest, version = prepare_data(cfg, ws, times)
    run, training, evaluation, registered, mlflow_run_id = train_and_register(
        cfg, ws, version, times
    )
    result = PipelineResult(
        run.root, version, ingest, training, evaluation, registered, mlflow_run_id, times
    )
    create_markdown_artifact(
        key="pipeline-result",
        markdown=_result_markdown(result),
        description="Where everything this run produced lives",
    )
    return result


def _result_markdown(result: PipelineResult) -> str:
    rows = [
        ("data version", result.data_version.id),
        (
            "registered model",
            f"{result.registered.name} v{result.registered.version} @{result.registered.alias}",
        ),
        ("mlflow run", result.mlflow_run_id),
        *[(f"eval {k}", f"{v:.4f}") for k, v in result.evaluation.items()],
        *[(f"time {k}", f"{v:.1f}s") for k, v in result.stage_seconds.items()],
    ]
    return "| item | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
