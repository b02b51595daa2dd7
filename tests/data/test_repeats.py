"""Repeated judgements of one pair (either order) become one pair with a soft label."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from data_helpers import conv, write_jsonl

from alignment.config import IngestConfig, ValidationConfig
from alignment.data.formats import record_id
from alignment.data.ingest import ingest_file, summary_lines
from alignment.data.quality.signature_index import build_index
from alignment.methods.soft_labels import preference_probability
from alignment.quality_config import QualityConfig

GOOD, BAD = "Water boils at 100 degrees Celsius at sea level.", "Water never boils."
LONG, SHORT = "Paris is the capital of France.", "Lyon."
LEFT, RIGHT = "Take the left path, it is shorter.", "Take the right path, it is safer."


def _rows() -> list[dict]:
    q1, q2, q3 = "When does water boil?", "What is the capital of France?", "Which path?"
    return [
        conv(q1, GOOD, BAD, meta={"annotator": "ann"}),
        conv(q1, GOOD, BAD, meta={"annotator": "bob"}),  # an exact repeat: a duplicate row
        conv(q1, BAD, GOOD, meta={"annotator": "cat"}),
        conv(q2, SHORT, LONG, meta={"annotator": "ann"}),  # first written, outvoted below
        conv(q2, LONG, SHORT, meta={"annotator": "bob"}),
        conv(q2, LONG, SHORT, meta={"annotator": "cat"}),
        conv(q3, LEFT, RIGHT, meta={"annotator": "ann"}),
        conv(q3, RIGHT, LEFT, meta={"annotator": "bob"}),
        conv("Name a colour.", "Blue.", "Seven."),
        conv("Name a colour.", "Blue.", "Seven."),  # judged twice, the same way: left as it is
    ]


def _ingest(tmp_path, mode: str):
    source = write_jsonl(tmp_path / "judged.jsonl", _rows())
    quality = QualityConfig(aggregate_repeats=mode)
    result = ingest_file(
        source,
        tmp_path / mode,
        IngestConfig(chunk_rows=4, validate_rows=4),  # the repeats cross chunks
        ValidationConfig(max_rejected_fraction=0.5),
        quality_cfg=quality,
    )
    accepted = pq.read_table(result.accepted_path)
    by_prompt = {r["prompt"][0]["content"]: r for r in accepted.to_pylist()}
    return result, accepted, by_prompt


def test_soft_labels_are_the_share_of_judgements_preferring_the_chosen_response(tmp_path):
    result, accepted, by_prompt = _ingest(tmp_path, "soft")
    report = result.report
    assert report["repeats"] == {
        "mode": "soft",
        "groups": 4,
        "judgements": 10,
        "merged": 3,
        "conflicting": 3,
        "tied": 1,
    }
    # nothing lost: every row is accepted, rejected (exact repeats) or merged into a pair
    assert report["rule_failures"]["duplicate"] == 3
    assert result.accepted + result.rejected + report["repeats"]["merged"] == result.rows_in
    assert accepted.num_rows == result.accepted == 4

    water = by_prompt["When does water boil?"]
    assert water["chosen"][0]["content"] == GOOD
    assert water["score_chosen"] == pytest.approx(2 / 3)
    assert preference_probability(water["score_chosen"], water["score_rejected"]) == (
        pytest.approx(2 / 3)
    )
    meta = json.loads(water["meta"])
    assert meta["annotator"] == "ann" and meta["repeats"]["judgements"] == 3
    assert meta["repeats"]["annotators"] == ["ann", "bob", "cat"]

    # the first row written preferred the short answer; two of three did not: the pair turns
    france = by_prompt["What is the capital of France?"]
    assert france["chosen"][0]["content"] == LONG
    assert france["score_chosen"] == pytest.approx(2 / 3)
    assert json.loads(france["meta"])["repeats"]["turned"] is True
    assert france["id"] == record_id(france["prompt"], france["chosen"], france["rejected"])

    path = by_prompt["Which path?"]
    assert (path["score_chosen"], path["score_rejected"]) == (0.5, 0.5)
    colour = by_prompt["Name a colour."]  # judged twice alike: untouched, a hard label
    assert colour["score_chosen"] is None and colour["meta"] is None
    assert any(line.startswith("repeats     4 pairs judged") for line in summary_lines(result))
    # the near-duplicate index describes the rows as written, after the merge
    index = pq.read_table(tmp_path / "soft" / "signatures.parquet")
    assert index.equals(build_index(accepted, QualityConfig().near_duplicates))


def test_majority_orients_without_scores_and_keep_leaves_the_rows(tmp_path):
    result, _, by_prompt = _ingest(tmp_path, "majority")
    france = by_prompt["What is the capital of France?"]
    assert france["chosen"][0]["content"] == LONG and france["score_chosen"] is None
    assert result.report["repeats"]["tied"] == 1 and result.accepted == 4

    kept, accepted, _ = _ingest(tmp_path, "keep")
    assert "repeats" not in kept.report
    assert accepted.num_rows == kept.accepted == 7  # every row but the three exact repeats
