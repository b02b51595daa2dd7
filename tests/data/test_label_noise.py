"""Label noise: planted flips found by cross-validated reward models, reviewed, re-versioned."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest
from data_helpers import conv, run_cli, write_jsonl

from alignment.cai.review import ReviewError
from alignment.data.quality.label_noise import review_verdicts
from alignment.data.quality.planted import (
    BAD,
    HARD_POOL,
    oracle_pairs,
    plant_flips,
    word_list_pairs,
)

pytestmark = pytest.mark.slow


def _pairs(n: int, flip_share: float, seed: int = 0) -> tuple[list[dict], set[int]]:
    """The benchmark's word-list pairs with a share flipped at random, as input rows."""
    records, planted = plant_flips(*word_list_pairs(n, seed), flip_share, "random", seed)
    return [conv(r["prompt"][0]["content"], r["chosen"][0]["content"],
                 r["rejected"][0]["content"]) for r in records], planted  # fmt: skip


def test_planted_flips_are_flagged_reviewed_and_become_a_new_version(tmp_path):
    ws = tmp_path / "ws"
    rows, planted = _pairs(200, 0.1)
    raw = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "ingest"
    run_cli("data", "ingest", str(raw), "--out", str(out), "--version", ws=ws)
    sheet = tmp_path / "review.csv"
    found = tmp_path / "noise.json"
    shown = run_cli(
        "data", "label-noise", str(out), "--csv", str(sheet), "--json", str(found), ws=ws
    )
    flagged = json.loads(found.read_text())["flagged"]
    row_of = {r["id"]: r["row"] for r in pq.read_table(out / "accepted.parquet").to_pylist()}
    flagged_rows = {row_of[i] for i in flagged}
    hits = flagged_rows & planted
    precision, recall = len(hits) / len(flagged), len(hits) / len(planted)
    assert precision >= 0.8 and recall >= 0.6, (precision, recall)
    assert f"{len(flagged)} of 200 pairs flagged" in shown.stdout
    with sheet.open(newline="") as fh:
        sheet_rows = list(csv.DictReader(fh))
    assert [r["id"] for r in sheet_rows] == flagged
    assert all(float(r["p_chosen"]) < 0.5 for r in sheet_rows)
    # a reviewer flips the flagged pairs; the corrected file is ingested as a new version
    for r in sheet_rows:
        r["verdict"] = "flip"
    with sheet.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(sheet_rows[0]))
        writer.writeheader()
        writer.writerows(sheet_rows)
    fixed = tmp_path / "fixed.jsonl"
    run_cli(
        "cai",
        "review",
        "apply",
        "--labelled",
        str(out / "accepted.parquet"),
        "--csv",
        str(sheet),
        "--out",
        str(fixed),
        ws=ws,
    )
    result = tmp_path / "v2.json"
    run_cli("data", "ingest", str(fixed), "--version", "--json", str(result), ws=ws)
    second = json.loads(result.read_text())
    assert second["data_version"]["created"] and second["accepted"] == 200
    corrected = pq.read_table(second["accepted_path"]).to_pylist()
    wrong = sum(any(w in r["chosen"][0]["content"].split() for w in BAD) for r in corrected)
    # wrong after review: the planted flips not flagged, and the false flags a reviewer flipped
    assert wrong == len(planted - hits) + len(flagged_rows - planted)


def test_hard_flips_fall_on_the_smallest_margins_and_leave_the_input_alone():
    records, margins = oracle_pairs(200, seed=1)
    before = [dict(r) for r in records]
    flipped_records, hard = plant_flips(records, margins, 0.1, "hard", seed=1)
    _, random_rows = plant_flips(records, margins, 0.1, "random", seed=1)
    assert len(hard) == len(random_rows) == 20
    assert records == before  # the input is not changed in place
    pool = sorted(margins)[: round(HARD_POOL * 0.1 * 200)]
    assert all(margins[i] <= pool[-1] for i in hard)
    assert max(margins[i] for i in random_rows) > pool[-1]  # random flips reach easy pairs
    for i in hard:
        assert flipped_records[i]["chosen"] == records[i]["rejected"]
        assert flipped_records[i]["id"] != records[i]["id"]


def test_a_reviewers_answer_becomes_verdicts_on_every_flagged_pair():
    flagged = ["a", "b", "c"]
    assert review_verdicts(flagged, "all") == dict.fromkeys(flagged, "flip")
    assert review_verdicts(flagged, "none") == dict.fromkeys(flagged, "agree")
    assert review_verdicts(flagged, "listed", ["b"]) == {"a": "agree", "b": "flip", "c": "agree"}
    with pytest.raises(ReviewError, match=r"not flagged pairs.*first: z"):
        review_verdicts(flagged, "listed", ["b", "z"])
    with pytest.raises(ReviewError, match="needs the ids"):
        review_verdicts(flagged, "listed", [])
    with pytest.raises(ReviewError, match="only with accept=listed"):
        review_verdicts(flagged, "all", ["a"])
