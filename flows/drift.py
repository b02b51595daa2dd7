"""Drift of a fresh data version from the champion's, checked by the retrain flow before training."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from alignment import registry
from alignment.config import PipelineConfig
from alignment.data.quality.drift import compare_versions, html_report, markdown
from alignment.data.version import find_version
from alignment.errors import DataDrift
from alignment.workspace import Workspace, atomic_write_text


def champion_data_version(cfg: PipelineConfig, ws: Workspace) -> str | None:
    """The data version the current champion was trained on (None without a champion)."""
    registry.connect(ws, cfg.registry.experiment)
    from alignment.champion import ChampionSlot

    slot = ChampionSlot.of(cfg.registry.model_name, cfg.registry.production_model)
    version = slot.holder(registry.CHAMPION)
    if version is None:
        return None
    return registry.lineage(cfg.registry.model_name, version)["tags"].get("data_version")


@task(name="check-data-drift")
def drift_check_task(cfg: PipelineConfig, ws: Workspace, data_version: str) -> dict | None:
    """Compare ``data_version`` with the champion's; stop (DataDrift) past a threshold, or, with
    ``on_exceed=warn``, return the drift with its ``warning`` for the caller to send.

    Writes the HTML report under the workspace's reports and attaches the measures as an
    artifact. None when drift is off or there is no champion's version to compare with.
    """
    if not cfg.quality.drift.enabled:
        return None
    before = champion_data_version(cfg, ws)
    if before is None or before == data_version:
        return None
    if find_version(ws, cfg.ingest.dataset, before) is None:
        # a champion trained on another dataset (CAI pairs, say): nothing comparable here
        get_run_logger().info(
            "champion's data %s is not in %s: no drift check", before, cfg.ingest.dataset
        )
        return None
    drift = compare_versions(ws, cfg.ingest.dataset, before, data_version, cfg.quality.drift)
    page = ws.reports / f"drift-{before[:12]}-{data_version[:12]}.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    drift["report"] = str(atomic_write_text(page, html_report(drift)))
    create_markdown_artifact(
        key="data-drift",
        markdown=markdown(drift) + f"\nReport: `{page}`\n",
        description="Drift of the new data version from the champion's",
    )
    if drift["exceeded"]:
        names = ", ".join(
            f"{n} {drift['measures'][n]['value']} > {drift['measures'][n]['threshold']}"
            for n in drift["exceeded"]
        )
        message = (
            f"data version {data_version} drifted from the champion's {before}: {names} "
            f"(quality.drift.thresholds); report {page}"
        )
        if cfg.quality.drift.on_exceed == "stop":
            raise DataDrift(
                f"{message}. Not training: inspect the data, or set "
                "quality.drift.on_exceed=warn to train anyway"
            )
        # the caller warns (log and notification) and goes on to train
        drift["warning"] = f"{message}; training anyway (quality.drift.on_exceed=warn)"
    return drift
