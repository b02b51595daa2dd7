"""Scheduled retraining: fresh data in the landing place → a new, gated champion, or a quick no-op.

The flow trains only when the newest data version is one that no registered version of this
use case was trained on (read from the registry's lineage tags). Only landing files that have
settled are taken (alignment.data.landing): a file still being copied in waits for a later run,
and the version records each file it was made from. Unchanged landing files are recognised from
their fingerprint before any ingest, so a scheduled run with nothing new costs seconds. At most
one retrain per use case runs at a time: a second one waits or skips (config), and can never
train twice on the same data version, because the check happens under the lock.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from alignment import promotion, registry
from alignment.champion import ChampionSlot
from alignment.config import PipelineConfig, load_config
from alignment.data.integrity import verify_versions
from alignment.data.landing import (
    LandingSelection,
    changed_since_versioned,
    refuse_changed,
    select_landing,
    snapshot,
    versioned_landing_files,
)
from alignment.data.version import known_source, remember_source
from alignment.errors import ConfigError, TrainingFailed, VersioningError
from alignment.serve.pairs import record_feedback_lineage
from alignment.workspace import Workspace, file_lock
from flows.drift import drift_check_task
from flows.pipeline import prepare_data, train_and_register


@dataclass
class RetrainResult:
    status: str  # nothing-new | waiting | trained | busy
    message: str
    data_version: str | None = None
    registered_version: str | None = None
    alias: str | None = None
    decision: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    # landing files not taken by this run, with why: still being written, or a temporary name
    waiting: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    # drift measures past their thresholds, trained on anyway (quality.drift.on_exceed=warn)
    drift_exceeded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@task(name="look-for-fresh-data")
def fresh_data_task(cfg: PipelineConfig, ws: Workspace, source: Path) -> LandingSelection:
    """The landing files that have settled, hashed; the others with why they wait."""
    if not source.exists():
        raise ConfigError(f"landing place {source} does not exist")
    rc = cfg.retrain
    return select_landing(source, rc.settle_seconds, rc.marker, rc.manifest)


@task(name="check-versioned-landing-files")
def changed_files_task(
    cfg: PipelineConfig, ws: Workspace, selection: LandingSelection
) -> list[str]:
    """Taken files whose bytes differ from what an earlier data version recorded for them."""
    recorded = versioned_landing_files(ws, cfg.ingest.dataset)
    return changed_since_versioned(selection.taken, recorded)


@task(name="read-trained-data-versions")
def trained_versions_task(cfg: PipelineConfig, ws: Workspace) -> set[str]:
    """The data versions some registered version of this use case was trained on."""
    registry.connect(ws, cfg.registry.experiment)
    return registry.trained_data_versions(cfg.registry.model_name)


@task(name="verify-data-version")
def verify_data_task(ws: Workspace, dataset: str, version_id: str) -> None:
    """Train only on a version whose files are whole in the cache and on the remote."""
    (check,) = verify_versions(ws, dataset, version_id)
    print(check.line())
    if not check.ok:
        raise VersioningError(
            f"data version {version_id} of {dataset!r} failed verification, not training on it: "
            + "; ".join(check.problems)
        )


@task(name="promote-through-gate")
def gate_task(cfg: PipelineConfig, ws: Workspace, version: str, data_version: str):
    policy, path = promotion.load_policy(cfg.registry.gate_policy)
    return promotion.promote(
        ws,
        cfg.registry.model_name,
        version,
        policy,
        policy_path=path,
        actor="retrain flow",
        reason=f"scheduled retrain on data version {data_version}",
        production=cfg.registry.production_model,
    )


@task(name="train-on-training-pool", cache_policy=NO_CACHE)
def remote_training_task(
    cfg: PipelineConfig,
    config_path: str | None,
    overrides: list[str] | None,
    data_version: str,
) -> registry.RegisteredVersion:
    """Run the training deployment (a GPU pool) on ``data_version``; wait; return its version.

    A training run that does not complete raises TrainingFailed naming it, so this retrain
    run fails and says which run to look at.
    """
    from prefect.deployments import run_deployment

    deployment = cfg.retrain.training_deployment
    run = run_deployment(
        deployment,
        parameters={
            "config_path": config_path,
            "overrides": overrides or [],
            "data_version": data_version,
        },
        timeout=cfg.retrain.training_timeout_s,
        poll_interval=2,
    )
    state = run.state
    if state is None or not state.is_final():
        raise TrainingFailed(
            f"training run {run.name!r} ({run.id}) of deployment {deployment} did not finish "
            f"within retrain.training_timeout_s={cfg.retrain.training_timeout_s:g} s"
        )
    if not state.is_completed():
        raise TrainingFailed(
            f"training run {run.name!r} ({run.id}) of deployment {deployment} ended "
            f"{state.type.value}: {state.message or '-'}"
        )
    registry.connect(Workspace.from_config(cfg.workspace), cfg.registry.experiment)
    registered = registry.version_trained_on(cfg.registry.model_name, data_version)
    if registered is None:
        raise TrainingFailed(
            f"training run {run.name!r} ({run.id}) of deployment {deployment} completed but "
            f"registered no version of {cfg.registry.model_name!r} on data {data_version}"
        )
    get_run_logger().info("training run %s registered version %s", run.name, registered.version)
    slot = ChampionSlot.of(cfg.registry.model_name, cfg.registry.production_model)
    if slot.holder(registry.CHAMPION) == registered.version:  # a first version, gated there
        registered = replace(registered, alias=registry.CHAMPION)
    return registered


def notify(cfg: PipelineConfig, event: str, message: str, **details) -> None:
    """Log the message, and post it to the configured webhook (failures to notify are logged)."""
    logger = get_run_logger()
    logger.warning("%s: %s", event, message)
    if not cfg.retrain.notify_webhook:
        return
    body = json.dumps({"event": event, "message": message, **details}, default=str).encode()
    request = urllib.request.Request(
        cfg.retrain.notify_webhook, data=body, headers={"Content-Type": "application/json"}
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except OSError as exc:
        logger.error("could not notify %s: %s", cfg.retrain.notify_webhook, exc)


@flow(name="retrain", log_prints=True, persist_result=True)
def retrain(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    landing: str | None = None,
) -> dict:
    """Retrain the use case's model if fresh data landed; promote it through the gate."""
    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    source = Path(landing) if landing else (cfg.retrain.landing or cfg.ingest.input)
    if source is None:
        raise ConfigError("no landing place: set retrain.landing (or ingest.input)")
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"input": Path(source)})})
    name = cfg.registry.model_name
    lock = ws.root / "locks" / f"retrain-{name}.lock"
    wait = cfg.retrain.wait_timeout_s if cfg.retrain.on_busy == "wait" else 0
    held = file_lock(lock, timeout=wait)
    try:
        held.__enter__()
    except TimeoutError:  # only the lock's own time-out means "busy"; the body's propagate
        result = RetrainResult("busy", f"another retrain of {name!r} is running; skipped")
    else:
        try:
            result = _retrain_locked(cfg, ws, Path(source), config_path, overrides)
        except Exception as exc:
            notify(cfg, "retrain-failed", f"retrain of {name!r} failed: {exc}")
            raise
        finally:
            held.__exit__(None, None, None)
    print(result.message)
    create_markdown_artifact(
        key="retrain-result",
        markdown="| item | value |\n|---|---|\n"
        + "\n".join(f"| {k} | {v} |" for k, v in result.to_dict().items() if v),
        description="What this scheduled retrain did",
    )
    return result.to_dict()


def _retrain_locked(
    cfg: PipelineConfig,
    ws: Workspace,
    source: Path,
    config_path: str | None = None,
    overrides: list[str] | None = None,
) -> RetrainResult:
    name = cfg.registry.model_name
    times: dict[str, float] = {}
    start = time.perf_counter()
    trained = trained_versions_task.with_options(
        retries=cfg.registry.retries, retry_delay_seconds=cfg.registry.retry_delay_s
    )(cfg, ws)
    selection = fresh_data_task(cfg, ws, source)
    waiting = selection.waiting_message()
    if waiting:
        print(waiting)
    if selection.ignored:
        print("ignored: " + ", ".join(f"{p} ({why})" for p, why in selection.ignored.items()))
    landing = {"waiting": selection.waiting, "ignored": selection.ignored}
    note = f"; {waiting}" if waiting else ""
    # a run that trains nothing while a file is still arriving is waiting for it
    idle = "waiting" if waiting else "nothing-new"

    if not selection.taken:
        times["check"] = round(time.perf_counter() - start, 2)
        return RetrainResult(idle, f"nothing to take from {source}{note}", seconds=times, **landing)
    known = known_source(ws, cfg.ingest.dataset, selection.fingerprint)
    if known is not None and known in trained:
        times["check"] = round(time.perf_counter() - start, 2)
        message = f"nothing new: data version {known} is already trained{note}"
        return RetrainResult(idle, message, known, seconds=times, **landing)
    changed = changed_files_task(cfg, ws, selection)
    if changed and cfg.retrain.on_changed == "refuse":
        refuse_changed(changed)
    if changed:
        notify(cfg, "landing-file-changed", "; ".join(changed))
    landing["changed"] = changed
    # ingest reads a copy that hashes as taken, so a write after the check cannot reach a version
    copy = snapshot(selection, ws.staging / f"landing-{uuid.uuid4().hex[:12]}")
    try:
        taken = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"input": copy})})
        _, version = prepare_data(
            taken, ws, times, landing_files=[f.to_dict() for f in selection.taken]
        )
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    remember_source(ws, cfg.ingest.dataset, selection.fingerprint, version.id)
    if version.id in trained:
        message = f"nothing new: data version {version.id} is already trained{note}"
        return RetrainResult(idle, message, version.id, seconds=times, **landing)
    verify_data_task(ws, cfg.ingest.dataset, version.id)
    # stops here when the data drifted and the policy says so; else the warning goes out
    drift = drift_check_task(cfg, ws, version.id) or {}
    if drift.get("warning"):
        notify(cfg, "data-drift", drift["warning"], data_version=version.id,
               exceeded=drift["exceeded"], report=drift["report"])  # fmt: skip
    if cfg.retrain.training_deployment:
        # the training pool's run reads this data version from the shared workspace
        registered = _timed_remote(cfg, config_path, overrides, version.id, times)
    else:
        _, _, _, registered, _ = train_and_register(cfg, ws, version, times)
    # served feedback in this data: the new version names the traces it learned from
    record_feedback_lineage(ws, cfg.ingest.dataset, version.id, name, registered.version)
    if registered.decision is not None:
        # no champion yet: the pipeline already put this first candidate through the gate
        decision, alias, why = registered.decision, registered.alias, " (no champion before)"
    else:
        outcome = gate_task(cfg, ws, registered.version, version.id)
        decision, why = outcome.decision, ""
        alias = registry.CHAMPION if outcome.promoted else registry.CHALLENGER
    if alias != registry.CHAMPION:
        failed = registry.model_version(name, registered.version).tags.get("gate.failed", "-")
        notify(
            cfg,
            "gate-rejected",
            f"{name} version {registered.version} was not promoted: {failed}",
            version=registered.version,
            data_version=version.id,
        )
    return RetrainResult(
        "trained",
        f"trained {name} version {registered.version} on data {version.id}: {decision}{why}{note}",
        version.id,
        registered.version,
        alias,
        decision,
        times,
        **landing,
        drift_exceeded=drift.get("exceeded", []) if drift.get("warning") else [],
    )


def _timed_remote(cfg, config_path, overrides, data_version: str, times: dict[str, float]):
    start = time.perf_counter()
    try:
        return remote_training_task(cfg, config_path, overrides, data_version)
    finally:
        times["training-deployment"] = round(time.perf_counter() - start, 2)
