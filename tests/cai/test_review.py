"""Human review: sample to CSV, verdicts back, agreement rate, flips as a new file."""

from __future__ import annotations

import csv
import json

import pytest

from alignment.cai.review import (
    ReviewError,
    apply_review,
    load_labelled,
    read_verdicts,
    sample_for_review,
)


@pytest.fixture()
def labelled(tmp_path):
    path = tmp_path / "labelled.jsonl"
    rows = [
        {
            "prompt": [{"role": "user", "content": f"question {i}"}],
            "chosen": [{"role": "assistant", "content": f"good answer {i}"}],
            "rejected": [{"role": "assistant", "content": f"bad answer {i}"}],
            "score_chosen": 0.7,
            "score_rejected": 0.3,
            "meta": {"principle": "honesty", "constitution_hash": "abc"},
        }
        for i in range(10)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _mark(csv_path, verdicts):
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row, verdict in zip(rows, verdicts, strict=False):
        row["verdict"] = verdict
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_sample_mark_and_apply(labelled, tmp_path):
    sheet = sample_for_review(labelled, tmp_path / "review.csv", n=4, seed=1)
    rows = _mark(sheet, ["agree", "flip", "Agree ", ""])
    assert len(rows) == 4 and all(r["principle"] == "honesty" for r in rows)
    verdicts = read_verdicts(sheet)
    assert len(verdicts) == 3
    result = apply_review(labelled, verdicts, tmp_path / "reviewed.jsonl")
    assert (result.reviewed, result.agreed, result.flipped) == (3, 2, 1)
    assert result.agreement_rate == pytest.approx(2 / 3)
    records = load_labelled(result.out_path)
    assert len(records) == 10
    flipped = [r for r in records if '"flip"' in r["meta"]]
    assert len(flipped) == 1
    f = flipped[0]
    assert f["chosen"][0]["content"].startswith("bad") and f["score_chosen"] is None
    assert json.loads(f["meta"])["ai_scores"] == {"chosen": 0.7, "rejected": 0.3}
    assert rows[1]["id"] in f["meta"]  # the AI label's id is kept for the audit


def test_bad_verdict_names_the_line(labelled, tmp_path):
    sheet = sample_for_review(labelled, tmp_path / "review.csv", n=3)
    _mark(sheet, ["agree", "maybe"])
    with pytest.raises(ReviewError, match="line 3"):
        read_verdicts(sheet)


def test_unknown_ids_are_refused(labelled):
    with pytest.raises(ReviewError, match="not in"):
        apply_review(labelled, {"0000": "agree"})
