"""MLflow: tracking runs, registering policies with their lineage, moving aliases."""

from __future__ import annotations

import math
import subprocess
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignment.errors import RegistryError
from alignment.workspace import Workspace

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"  # the champion before the current one (promotion sets it, rollback uses it)
HISTORY_TAG = "promotion.history"  # registered-model tag: JSON list of champion moves
# on a production model's version (alignment.champion): the candidate it copies
SOURCE_TAG = "candidate.version"
SOURCE_MODEL_TAG = "candidate.model"
PIP_REQUIREMENTS = ["torch==2.13.0", "transformers==5.24.0", "mlflow==3.17.2", "alignment"]
COMPLETE_TAG = "registration"  # set last: a version without it is a half-made registration
# The figures a version is tagged with, in order of preference; the first five it has are
# tagged (every metric stays on its run, where the gate reads them), so the registry's
# versions table stays readable.
HEADLINE_METRICS = (
    "reward_accuracy",
    "judge_win_rate_vs_champion",
    "win_rate_vs_champion",
    "harmful_compliance_rate",
    "refusal_rate",
    "kl_from_reference",
    "alignment_tax",
    "reward_margin_mean",
)
HEADLINE_LIMIT = 5
# what MLflow answers for a model, version or alias that is not there (anything else, such as an
# unreachable server, is an error to raise, never an empty answer)
_NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    alias: str
    run_id: str
    model_uri: str
    decision: str | None = None  # the gate's, when it ran at registration (no champion yet)


def connect(ws: Workspace, experiment: str) -> str:
    """Point MLflow at the workspace's store; return the experiment id (created once)."""
    import os

    import mlflow

    # MLflow also writes both URIs into the environment, where Workspace.tracking_uri would
    # read them back as the user's choice: the first workspace of a process would win forever
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.tracking_uri)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    artifact_location = None
    if ws.tracking_uri.startswith("sqlite:") or ws.tracking_uri.startswith("file:"):
        # a SQLite store would otherwise put artifacts under ./mlruns of whatever the cwd is
        artifact_location = ws.mlflow_artifacts.as_uri()
    try:
        return mlflow.create_experiment(experiment, artifact_location=artifact_location)
    except Exception:  # another process created it between our look and our create
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id


def git_commit(path: Path | None = None) -> str:
    """The project's git commit (with '-dirty' when the tree has changes), or 'unknown'."""
    cwd = str(path or Path.cwd())
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def log_history(history: Iterable[dict], prefix: str) -> None:
    """Log per-step training metrics (numbers only) under ``prefix/``."""
    import mlflow

    for record in history:
        step = int(record.get("step", 0))
        metrics = {
            f"{prefix}/{k}": float(v)
            for k, v in record.items()
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
        }
        if metrics:
            mlflow.log_metrics(metrics, step=step)


def is_not_found(exc: Exception) -> bool:
    """True when an MlflowException says the model, version or alias does not exist."""
    return getattr(exc, "error_code", None) in _NOT_FOUND


def unreachable(exc: Exception) -> RegistryError:
    """The error for an MLflow call that failed for another reason than 'not found'."""
    import mlflow

    return RegistryError(f"MLflow at {mlflow.get_tracking_uri()} failed to answer: {exc}")


def open_tracking_run(ws: Workspace, experiment: str, run_name: str, tags: dict[str, str]):
    """Create the pipeline's MLflow run before training, so metrics can stream into it.

    Returns the run id, or None when MLflow cannot be reached now (training goes on; the
    register task then creates the run and logs the whole history at the end).
    """
    import logging

    from mlflow import MlflowClient

    try:
        experiment_id = connect(ws, experiment)
        run = MlflowClient().create_run(experiment_id, run_name=run_name, tags=tags)
    except Exception as exc:  # any failure here only costs the live view
        logging.getLogger(__name__).warning(
            "MLflow run not opened before training (%s); metrics are logged at the end", exc
        )
        return None
    return run.info.run_id


def end_tracking_run(ws: Workspace, run_id: str | None, status: str = "FAILED") -> None:
    """Mark an opened run ended (best effort: the caller is already handling a failure)."""
    import contextlib

    from mlflow import MlflowClient

    if run_id:
        with contextlib.suppress(Exception):
            MlflowClient(tracking_uri=ws.tracking_uri).set_terminated(run_id, status)


class LiveMetrics:
    """Streams a job's per-step metrics into an MLflow run while it trains (best effort).

    A failure to log never fails training: the first one is reported, logging stops, and
    ``complete`` turns False so the register task logs the whole history from the job's file.
    """

    def __init__(self, tracking_uri: str, run_id: str, prefix: str, warn=print):
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.run_id, self.prefix, self.warn = run_id, prefix, warn
        self.complete = True
        self.logged = 0

    def __call__(self, step: int, values: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        if not self.complete:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"{self.prefix}/{k}", float(v), now, int(step))
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if not metrics:
            return
        try:
            self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)
            self.logged += 1
        except Exception as exc:
            self.complete = False
            self.warn(f"live metrics to MLflow stopped ({exc}); the history is logged at the end")


def current_alias_version(name: str, alias: str) -> str | None:
    """The version holding ``alias``; None only when MLflow says there is none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise unreachable(exc) from exc


def register_policy(
    checkpoint: Path,
    name: str,
    tags: dict[str, str],
) -> RegisteredVersion:
    """Log ``checkpoint`` as a pyfunc model in the active run and register it as ``challenger``.

    Only promotion through the gate moves ``champion``, for the first version too.
    """
    import mlflow
    from mlflow import MlflowClient

    from alignment import serving

    run = mlflow.active_run()
    if run is None:
        raise RegistryError("register_policy needs an active MLflow run")
    code = Path(serving.__file__).with_name("serving_model.py")
    with warnings.catch_warnings():
        # MLflow nags about type hints and input examples; the signature is explicit
        warnings.simplefilter("ignore", UserWarning)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts={"checkpoint": str(checkpoint)},
            signature=serving.signature(),
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    # first, so that the registry's versions table lists the gate's decision on top
    client.set_model_version_tag(name, version, "gate.decision", "pending")
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.set_registered_model_alias(name, CHALLENGER, version)
    describe_version(name, version)
    client.set_model_version_tag(name, version, COMPLETE_TAG, "complete")
    return RegisteredVersion(
        name, version, CHALLENGER, run.info.run_id, f"models:/{name}/{version}"
    )


def headline_tags(evaluation: dict[str, float]) -> dict[str, str]:
    """``eval.<metric>`` tags for the first HEADLINE_LIMIT headline metrics ``evaluation`` has."""
    present = [k for k in HEADLINE_METRICS if k in evaluation]
    return {f"eval.{k}": f"{evaluation[k]:.4g}" for k in present[:HEADLINE_LIMIT]}


def version_metrics(mv) -> dict[str, float]:
    """Every evaluation metric of a model version: its run's ``eval/*`` metrics, exact.

    ``eval.*`` tags fill in what the run lacks (versions registered before metrics lived only
    on the run, or registered by hand).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    out: dict[str, float] = {}
    for key, value in mv.tags.items():
        if key.startswith("eval."):
            try:
                out[key.removeprefix("eval.")] = float(value)
            except ValueError:
                continue
    if mv.run_id:
        try:
            run = MlflowClient().get_run(mv.run_id)
        except MlflowException as exc:
            if not is_not_found(exc):
                raise unreachable(exc) from exc
            return out
        out.update(
            {k.removeprefix("eval/"): v for k, v in run.data.metrics.items() if k[:5] == "eval/"}
        )
    return out


def describe_version(name: str, version: str | int) -> str:
    """Write the version's description from its and its run's tags: gate verdict, data, judge."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    mv = model_version(name, version)
    run = None
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
        except MlflowException as exc:
            if not is_not_found(exc):
                raise unreachable(exc) from exc
    tags = {**(run.data.tags if run else {}), **mv.tags}
    verdict = tags.get("gate.decision", "pending")
    # plain text first: the versions table shows the description's start unrendered
    gate = f"Gate: {verdict}"
    if verdict == "pending":
        gate += " (not evaluated yet: alignment models promote or the retrain flow decides)"
    else:
        gate += f" by policy {tags.get('gate.policy', '?')} at {tags.get('gate.decided_at', '?')}"
        if tags.get("gate.failed", "-") != "-":
            gate += f"; failed: {tags['gate.failed']}"
    lines = [gate]
    report = tags.get("gate.report")
    if report:
        lines.append(f"Gate report: {_ui_link(run, report)}")
    lines += [
        f"Data: `{tags.get('dataset', '?')}` version `{tags.get('data_version', '?')}`",
        f"Methods: {tags.get('methods', tags.get('method', '?')).replace(',', ' → ')} "
        f"from base model `{tags.get('base_model', '?')}`",
        f"Judge: {tags.get('judge', 'not recorded')}",
    ]
    figures = [f"{k.removeprefix('eval.')} {v}" for k, v in tags.items() if k.startswith("eval.")]
    if figures:
        lines.append("Headline: " + ", ".join(figures) + " (all metrics on the run)")
    text = "\n\n".join(lines)
    client.update_model_version(name, str(version), description=text)
    return text


def _ui_link(run, report: str) -> str:
    """A Markdown link to ``runs:/<run>/<path>`` in the MLflow UI (the URI itself if no run)."""
    if run is None or not report.startswith(f"runs:/{run.info.run_id}/"):
        return f"`{report}`"
    path = report.removeprefix(f"runs:/{run.info.run_id}/")
    page = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifacts/{path}"
    return f"[{path}]({page}) (`{report}`)"


def settle_earlier_attempt(
    name: str, experiment_id: str, run_name: str
) -> RegisteredVersion | None:
    """Make a retried registration safe: look at what earlier attempts of ``run_name`` left.

    A version they registered completely is returned (register nothing more); a half-made one
    (its attempt died between creating the version and its last tag) is deleted, so the retry
    leaves exactly one version.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    runs = client.search_runs(
        [experiment_id], filter_string=f"attributes.run_name = '{run_name}'", max_results=100
    )
    run_ids = {r.info.run_id for r in runs}
    if not run_ids:
        return None
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise unreachable(exc) from exc
    done = None
    for v in versions:
        if v.run_id not in run_ids:
            continue
        if v.tags.get(COMPLETE_TAG) == "complete":
            alias = (
                CHAMPION if current_alias_version(name, CHAMPION) == str(v.version) else CHALLENGER
            )
            done = RegisteredVersion(
                name, str(v.version), alias, v.run_id, f"models:/{name}/{v.version}"
            )
        else:
            client.delete_model_version(name, str(v.version))
    return done


def trained_data_versions(name: str) -> set[str]:
    """Data versions that some registered version of ``name`` was trained on."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if is_not_found(exc):
            return set()
        raise unreachable(exc) from exc
    return {v.tags["data_version"] for v in versions if "data_version" in v.tags}


def version_trained_on(name: str, data_version: str) -> RegisteredVersion | None:
    """The newest complete version of ``name`` trained on ``data_version`` (None if none is).

    ``decision`` is the gate's when one was recorded at registration (a first version).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise unreachable(exc) from exc
    done = [
        v
        for v in versions
        if v.tags.get("data_version") == data_version and v.tags.get(COMPLETE_TAG) == "complete"
    ]
    if not done:
        return None
    v = max(done, key=lambda v: int(v.version))
    decision = v.tags.get("gate.decision")
    return RegisteredVersion(
        name,
        str(v.version),
        CHALLENGER,
        v.run_id,
        f"models:/{name}/{v.version}",
        decision=None if decision in (None, "pending") else decision,
    )


def model_version(name: str, version: str | int):
    """The registered ``name`` version ``version``, or a RegistryError saying it isn't there."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version(name, str(version))
    except MlflowException as exc:
        if not is_not_found(exc):
            raise unreachable(exc) from exc
        raise RegistryError(f"{name} version {version} is not registered") from exc


def resolve_ref(ref: str, default_name: str) -> tuple[str, str]:
    """``NAME@alias``, ``NAME/version``, ``@alias`` or a bare version number → (name, version)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if "@" in ref:
        name, _, alias = ref.partition("@")
        name = name or default_name
        try:
            return name, str(MlflowClient().get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if not is_not_found(exc):
                raise unreachable(exc) from exc
            raise RegistryError(f"{name} has no alias {alias!r}") from exc
    name, _, number = ref.rpartition("/")
    name = name or default_name
    if not number.isdigit():
        raise RegistryError(f"{ref!r}: give NAME@alias, NAME/version or a version number")
    return name, str(model_version(name, number).version)


def lineage(name: str, version: str | int, production: str | None = None) -> dict[str, Any]:
    """What made ``name`` version ``version`` and how it moved: tags, aliases, run, history.

    With ``production`` (the model holding ``champion``), its aliases on copies of this version
    are listed as ``alias (production/N)`` and the history is the production model's.
    """
    import json

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mv = model_version(name, version)
    try:
        model = MlflowClient().get_registered_model(name)
    except MlflowException as exc:
        if not is_not_found(exc):
            raise unreachable(exc) from exc
        raise RegistryError(f"no registered model named {name!r}") from exc
    version = str(version)
    aliases = sorted(a for a, v in model.aliases.items() if str(v) == version)
    history_tags = model.tags
    if production:
        try:
            held = MlflowClient().get_registered_model(production)
            copies = MlflowClient().search_model_versions(f"name = '{production}'")
        except MlflowException as exc:
            if not is_not_found(exc):
                raise unreachable(exc) from exc
            held, copies = None, []
        mine = {
            str(c.version)
            for c in copies
            if c.tags.get(SOURCE_TAG) == version and c.tags.get(SOURCE_MODEL_TAG) == name
        }
        if held is not None:
            history_tags = held.tags
            aliases += sorted(
                f"{a} ({production}/{v})" for a, v in held.aliases.items() if str(v) in mine
            )
    history = json.loads(history_tags.get(HISTORY_TAG) or "[]")
    return {
        "name": name,
        "version": version,
        "aliases": aliases,
        "run_id": mv.run_id,
        "source": mv.source,
        "created": mv.creation_timestamp,
        "tags": dict(sorted(mv.tags.items())),
        "metrics": dict(sorted(version_metrics(mv).items())),
        "description": mv.description or "",
        "history": [e for e in history if version in (e.get("version"), e.get("from"))],
    }


def download_checkpoint(name: str, alias: str, dest: Path) -> Path | None:
    """The checkpoint folder of ``name@alias`` downloaded under ``dest``, or None if no such alias."""
    import mlflow

    if current_alias_version(name, alias) is None:
        return None
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@{alias}", dst_path=str(dest)))
    found = sorted(p.parent for p in (local / "artifacts").rglob("config.json"))
    if not found:
        raise RegistryError(f"{name}@{alias} holds no checkpoint (no config.json under artifacts/)")
    return found[0]
