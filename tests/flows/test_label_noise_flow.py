"""The label-noise review flow pauses for a reviewer, who accepts some flips; they become a new
data version."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect_helpers import paused_run_id

pytestmark = pytest.mark.slow


def _versioned_pairs_with_flips(ws_root: Path, dataset: str) -> tuple[str, set[str]]:
    """Word-list pairs with 10% of the labels flipped, ingested and versioned; the version id
    and the ids of the flipped pairs."""
    from alignment.config import load_config
    from alignment.data.ingest import ingest_file
    from alignment.data.quality.planted import plant_flips, word_list_pairs
    from alignment.data.version import version_dataset
    from alignment.workspace import Workspace

    records, planted = plant_flips(*word_list_pairs(120, seed=3), 0.1, "random", seed=3)
    raw = ws_root.parent / "pairs.jsonl"
    keep = ("prompt", "chosen", "rejected")
    raw.write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in records))
    cfg = load_config(None, [f"workspace.root={ws_root}", f"ingest.dataset={dataset}"])
    ws = Workspace.from_config(cfg.workspace).ensure()
    out = ingest_file(raw, ws_root.parent / "ingested", cfg.ingest, cfg.validation)
    version = version_dataset(ws, dataset, out.accepted_path.parent)
    return version.id, {records[i]["id"] for i in planted}


def test_a_reviewer_accepts_listed_flips_and_they_become_a_new_version(prefect_api, tmp_path):
    from prefect.flow_runs import resume_flow_run

    from alignment.data.version import list_versions, read_version_file
    from alignment.workspace import Workspace
    from flows.label_noise import label_noise_review_flow

    ws_root = tmp_path / "ws"
    before, planted = _versioned_pairs_with_flips(ws_root, "noisy")
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = label_noise_review_flow(
                overrides=[f"workspace.root={ws_root}", "ingest.dataset=noisy"],
                poll_interval=1,
                timeout_seconds=300,
            )
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    run_id = paused_run_id("label-noise-review", time.monotonic() + 240)
    (sheet,) = (ws_root / "staging").glob("label-noise*/review.csv")
    with sheet.open(newline="") as fh:
        flagged = [row["id"] for row in csv.DictReader(fh)]
    assert len(flagged) >= 4 and set(flagged) & planted
    # an answer outside the form's choices is refused by the API; the run stays paused
    with pytest.raises(RuntimeError, match="Cannot resume"):
        resume_flow_run(run_id, run_input={"accept": "some", "reviewer": "pat"})
    # an answer naming a pair that was not flagged is refused by the flow, which asks again
    resume_flow_run(
        run_id, run_input={"accept": "listed", "ids": ["not-a-pair"], "reviewer": "pat"}
    )
    time.sleep(2)
    run_id = paused_run_id("label-noise-review", time.monotonic() + 120)
    take = [i for i in flagged if i in planted][:3]
    resume_flow_run(run_id, run_input={"accept": "listed", "ids": take, "reviewer": "pat"})
    thread.join(timeout=240)
    assert "error" not in outcome, outcome.get("error")

    result = outcome["result"]
    assert result["data_version"] == before and result["flipped"] == sorted(take)
    assert result["reviewer"] == "pat"
    ws = Workspace(ws_root)
    versions = list_versions(ws, "noisy")
    assert [v.id for v in versions] == [before, result["new_version"]]
    rows = pq.read_table(io.BytesIO(read_version_file(ws, versions[-1]))).to_pylist()
    assert len(rows) == 120  # nothing dropped
    reviewed = {}
    for row in rows:
        meta = json.loads(row["meta"] or "{}")
        if "human_review" in meta:
            reviewed[meta.get("ai_label_flipped_from", row["id"])] = meta["human_review"]
    # the listed pairs flipped, the other flagged ones seen and kept
    assert reviewed == {i: "flip" if i in take else "agree" for i in flagged}
