"""Label-noise review as a Prefect flow: flag likely mislabelled pairs, ask a person, re-version.

The flow scores a data version with cross-validated reward models, writes the flagged pairs to
a review sheet (shown as an artifact), and pauses (Prefect UI: "Resume", with the
``FlipDecision`` form) until a reviewer accepts the suggested flips: all, none, or a list of
pair ids. The answer is applied as the CAI review applies verdicts (``cai review apply``) and
the corrected pairs are ingested as a new data version; nothing is dropped, and a run whose
reviewer flips nothing versions nothing. A filled review sheet (``review_csv``) answers without
a pause.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from alignment.cai.review import ReviewError, apply_review, read_verdicts
from alignment.config import load_config
from alignment.data.quality.label_noise import find_label_noise, review_verdicts, write_review_sheet
from alignment.data.version import get_version, list_versions
from alignment.errors import VersioningError
from alignment.workspace import Workspace, unique_dir
from flows.ingest import ingest_task, version_task


class FlipDecision(RunInput):
    """A reviewer's answer, entered in the Prefect UI when resuming the paused run."""

    accept: Literal["all", "none", "listed"] = "none"
    ids: list[str] = Field(default_factory=list)  # with accept=listed: the sheet's ids to flip
    reviewer: str
    note: str = ""


@task(name="fetch-data-version")
def fetch_task(ws: Workspace, dataset: str, version_id: str | None, out: Path) -> tuple[str, Path]:
    """The accepted rows of ``version_id`` (default: the newest version) in ``out``."""
    versions = list_versions(ws, dataset)
    if not versions:
        raise VersioningError(f"dataset {dataset!r} has no version: ingest it first")
    ref = version_id or versions[-1].id
    path = get_version(ws, dataset, ref, out / "accepted.parquet")
    chosen = next(v for v in versions if v.id.startswith(ref) or v.tag == ref)
    return chosen.id, path


@task(name="flag-label-noise")
def flag_task(accepted: Path, sheet: Path, folds: int, seed: int) -> list[str]:
    """Flag likely mislabelled pairs; write them to the review sheet; return their ids."""
    import pyarrow.parquet as pq

    table = pq.read_table(accepted)
    found = find_label_noise(table, folds=folds, seed=seed)
    write_review_sheet(table, found, sheet)
    return [found.ids[i] for i in found.ranked()]


def _sheet_markdown(sheet: Path, width: int = 60) -> str:
    def cell(text: str) -> str:
        text = " ".join(text.split()).replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    with sheet.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    lines = [
        f"Review sheet `{sheet}`: {len(rows)} pairs whose label held-out reward models contradict."
        " Resume the run with accept = all, none, or listed (and the ids to flip).",
        "",
        "| id | P(chosen) | prompt | chosen | rejected |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['id']} | {r['p_chosen']} | {cell(r['prompt'])} | {cell(r['chosen'])} "
        f"| {cell(r['rejected'])} |"
        for r in rows
    ]
    return "\n".join(lines)


def _ask(flagged: list[str], timeout: int, poll_interval: int) -> tuple[dict[str, str], str]:
    """Pause for a reviewer's ``FlipDecision``; an answer that names pairs not flagged (or
    lists none) is refused with why, and the run pauses again."""
    logger = get_run_logger()
    problem = ""
    while True:
        logger.info("waiting for a reviewer's answer on %d flagged pairs", len(flagged))
        answer = pause_flow_run(
            wait_for_input=FlipDecision.with_initial_data(
                description=f"{problem}Flip the labels of the {len(flagged)} pairs in the "
                "label-noise-review artifact? accept: all, none, or listed (with ids).",
                accept="none",
                reviewer="",
            ),
            timeout=timeout,
            poll_interval=poll_interval,
        )
        try:
            return review_verdicts(flagged, answer.accept, answer.ids), answer.reviewer
        except ReviewError as exc:
            logger.warning("answer refused, asking again: %s", exc)
            problem = f"**The last answer was refused**: {exc}\n\n"


@flow(name="label-noise-review", log_prints=True)
def label_noise_review_flow(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    data_version: str | None = None,
    review_csv: str | None = None,
    folds: int = 5,
    seed: int = 0,
    timeout_seconds: int = 86_400,
    poll_interval: int = 10,
) -> dict:
    """Flag, ask a reviewer (pause, or a filled ``review_csv``), apply the flips, re-version."""
    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    dataset = cfg.ingest.dataset
    out = unique_dir(ws.staging, "label-noise")
    version_id, accepted = fetch_task(ws, dataset, data_version, out)
    sheet = out / "review.csv"
    flagged = flag_task(accepted, sheet, folds, seed)
    outcome = {"data_version": version_id, "flagged": flagged, "review_csv": str(sheet)}
    print(f"{len(flagged)} pairs of data version {version_id} flagged; review sheet {sheet}")
    if not flagged:
        return {**outcome, "flipped": [], "new_version": None}
    create_markdown_artifact(
        key="label-noise-review",
        markdown=_sheet_markdown(sheet),
        description="Pairs flagged as likely mislabelled, to review before resuming the run",
    )
    if review_csv:
        verdicts, reviewer = read_verdicts(review_csv), "review sheet"
    else:
        verdicts, reviewer = _ask(flagged, timeout_seconds, poll_interval)
    result = apply_review(accepted, verdicts, out / "reviewed.jsonl")
    flipped = sorted(i for i, v in verdicts.items() if v == "flip")
    new_version = None
    if result.flipped:
        # the corrected pairs through the ingest path, as `data ingest` would take them
        taken = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"format": "auto"})})
        ingested = ingest_task(taken, ws, result.out_path)
        new_version = version_task(ws, dataset, ingested).id
    message = f"{reviewer} flipped {len(flipped)} of {len(flagged)} flagged pairs; " + (
        f"new data version {new_version}" if new_version else "no new data version"
    )
    print(message)
    create_markdown_artifact(
        key="label-noise-decision",
        markdown=f"{message} (from data version `{version_id}`)",
        description="The reviewer's answer on the flagged pairs",
    )
    return {**outcome, "flipped": flipped, "reviewer": reviewer, "new_version": new_version}
