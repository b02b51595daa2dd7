"""Ingest flow: preference file or folder → validated (GX) → versioned (DVC), with a summary."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from alignment.config import PipelineConfig, load_config
from alignment.data.ingest import IngestResult, ingest_file, summary_lines
from alignment.data.quality.history import earlier_signatures, keep_signatures
from alignment.data.version import DataVersion, version_dataset
from alignment.errors import ConfigError, ValidationFailed
from alignment.workspace import Workspace, remove_dead_partials, unique_dir


@task(name="ingest-and-validate")
def ingest_task(cfg: PipelineConfig, ws: Workspace, source: Path) -> IngestResult:
    remove_dead_partials(ws.staging)
    out_dir = unique_dir(ws.staging, cfg.ingest.dataset)
    earlier = earlier_signatures(ws, cfg.ingest.dataset, cfg.quality.near_duplicates)
    return ingest_file(source, out_dir, cfg.ingest, cfg.validation, cfg.split, cfg.quality, earlier)


@task(name="version-data")
def version_task(
    ws: Workspace, dataset: str, ingest: IngestResult, landing_files: list[dict] | None = None
) -> DataVersion:
    with data_versioning_limit(dataset):
        version = version_dataset(
            ws, dataset, ingest.accepted_path.parent, landing_files=landing_files
        )
    keep_signatures(ws, dataset, version.id, ingest.accepted_path.parent)
    return version


def data_versioning_limit(dataset: str):
    """With a Prefect server, hold ``version-<dataset>`` (machines that share a DVC remote)."""
    import contextlib
    import os

    if not os.environ.get("PREFECT_API_URL"):
        return contextlib.nullcontext()
    from prefect.concurrency.sync import concurrency

    # strict=False: a limit never created is a logged warning; the file lock still holds
    return concurrency(f"version-{dataset}", occupy=1, strict=False)


def _markdown(lines: list[str], version: DataVersion | None) -> str:
    if version is None:
        head = "**not versioned**: a set-level rule failed"
    else:
        state = "new" if version.created else "already versioned"
        head = f"**data version** `{version.id}` ({state})"
    return head + "\n\n```\n" + "\n".join(lines) + "\n```"


@flow(name="ingest-preferences", log_prints=True)
def ingest_flow(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    input: str | None = None,
    format: str | None = None,
) -> dict:
    """Ingest, validate and version one file or folder; attach the one-screen summary.

    ``format`` forces the input format (ingest.format). A set-level failure still attaches
    the summary, versions nothing and fails the run (ValidationFailed); the outputs stay in
    the staging folder for inspection.
    """
    overrides = [*(overrides or []), *([f"ingest.format={format}"] if format else [])]
    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    source = Path(input) if input else cfg.ingest.input
    if source is None:
        raise ConfigError("no input: pass input= or set ingest.input in the config")
    try:
        result = ingest_task(cfg, ws, Path(source))
    except ValidationFailed as exc:
        create_markdown_artifact(
            key="ingest-summary",
            markdown=_markdown([f"FAILED: {exc}"], None),
            description="Great Expectations validation of the preference data",
        )
        raise
    else:
        lines = summary_lines(result)
        version = version_task(ws, cfg.ingest.dataset, result)
        lines.append(f"version     {version.id} (tag {version.tag})")
    create_markdown_artifact(
        key="ingest-summary",
        markdown=_markdown(lines, version),
        description="Great Expectations validation of the preference data",
    )
    summary = "\n".join(lines)
    print(summary)
    return {
        "passed": True,
        "summary": summary,
        "data_version": version.to_dict(),
        "report_path": str(result.report_path),
    }
