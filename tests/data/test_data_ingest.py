"""The ingest stage end to end: outputs, determinism, failure after writing, the demo file."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from data_helpers import CORPUS, DEMO, conv, write_jsonl

from alignment.config import IngestConfig, ValidationConfig
from alignment.data.ingest import ingest_file, summary_lines
from alignment.errors import ValidationFailed


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_file_ingests_with_a_few_quarantined_rows(tmp_path):
    before = _sha(DEMO)
    result = ingest_file(DEMO, tmp_path / "out", IngestConfig(), ValidationConfig())
    assert _sha(DEMO) == before  # input never modified
    assert result.report["passed"] is True
    assert result.detected_format == "trl_conversational"
    assert 250 <= result.rows_in <= 320 and DEMO.stat().st_size < 300_000
    assert 3 <= result.rejected <= 8 and result.rejected / result.rows_in < 0.1
    assert result.accepted + result.rejected == result.rows_in

    rejected = pd.read_parquet(result.rejected_path)
    reasons = {r.split(":")[0] for rs in rejected["reasons"] for r in rs}
    assert {"chosen_equals_rejected", "empty_prompt", "invalid_json", "duplicate"} <= reasons

    accepted = pq.read_table(result.accepted_path)
    assert accepted.column_names == [
        "id", "prompt", "chosen", "rejected", "source", "row", "score_chosen", "score_rejected", "meta",
    ]  # fmt: skip
    assert accepted.schema.metadata is None
    assert (
        str(accepted.schema.field("prompt").type)
        == "list<element: struct<role: string, content: string>>"
    )
    first = accepted.slice(0, 1).to_pylist()[0]
    assert first["chosen"][0]["role"] == "assistant" and first["prompt"][-1]["role"] == "user"

    report = json.loads(result.report_path.read_text())
    assert report["accepted"] == result.accepted and report["source"] == str(DEMO)
    assert result.docs_path is not None and result.docs_path.is_file()
    text = "\n".join(summary_lines(result))
    assert "passed" in text and str(result.rejected_path) in text


def test_parquet_outputs_are_byte_identical_across_runs(tmp_path):
    src = CORPUS / "bad_scores.jsonl"
    cfg = ValidationConfig(max_rejected_fraction=1.0)
    a = ingest_file(src, tmp_path / "a", IngestConfig(), cfg)
    b = ingest_file(src, tmp_path / "b", IngestConfig(), cfg)
    assert a.accepted_path.read_bytes() == b.accepted_path.read_bytes()
    assert a.rejected_path.read_bytes() == b.rejected_path.read_bytes()
    assert pd.read_parquet(a.accepted_path)["score_chosen"].tolist() == [0.9, 0.5, 1.0]
    rejected = pq.read_table(a.rejected_path).to_pylist()
    assert [r["reasons"] for r in rejected] == [["score_order"], ["bad_score"], ["bad_score"]]
    assert json.loads(rejected[1]["raw"])["score_chosen"] == "high"


def test_set_level_failure_raises_after_writing(tmp_path):
    src = CORPUS / "many_broken.jsonl"
    out = tmp_path / "out"
    with pytest.raises(ValidationFailed) as info:
        ingest_file(src, out, IngestConfig(), ValidationConfig(max_rejected_fraction=0.2))
    message = str(info.value)
    assert "many_broken.jsonl" in message and "max_rejected_fraction" in message
    assert str(out / "rejected.parquet") in message
    assert (out / "accepted.parquet").is_file() and (out / "report.json").is_file()
    assert json.loads((out / "report.json").read_text())["passed"] is False
    assert len(pd.read_parquet(out / "rejected.parquet")) == 3


def test_forced_format_and_standard_input(tmp_path):
    rows = [{"prompt": f"Q{i}?", "chosen": "Yes.", "rejected": "No."} for i in range(3)]
    src = write_jsonl(tmp_path / "std.jsonl", rows)
    result = ingest_file(
        src, tmp_path / "out", IngestConfig(format="trl_standard"), ValidationConfig()
    )
    assert (result.detected_format, result.accepted, result.rejected) == ("trl_standard", 3, 0)
    assert result.report["format_requested"] == "trl_standard"


def test_ranked_rows_count_pairs(tmp_path):
    rows = [
        {
            "prompt": "Pick",
            "responses": [
                {"text": "a", "score": 3},
                {"text": "b", "score": 2},
                {"text": "c", "score": 1},
            ],
        },
        conv("unused", "x", "y"),  # not ranked: malformed under the detected format
    ]
    src = write_jsonl(tmp_path / "ranked.jsonl", rows)
    result = ingest_file(
        src, tmp_path / "out", IngestConfig(), ValidationConfig(max_rejected_fraction=0.5)
    )
    assert result.report["input_rows"] == 2
    assert (result.rows_in, result.accepted, result.rejected) == (4, 3, 1)  # 3 ordered pairs


def test_empty_file_fails_min_rows_but_writes_empty_outputs(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValidationFailed, match="min_rows"):
        ingest_file(CORPUS / "empty.jsonl", out, IngestConfig(), ValidationConfig(min_rows=1))
    accepted = pq.read_table(out / "accepted.parquet")
    assert accepted.num_rows == 0 and "prompt" in accepted.column_names


def test_refuses_to_overwrite_its_input(tmp_path, good_rows):
    from alignment.errors import DataFormatError

    first = ingest_file(
        write_jsonl(tmp_path / "in.jsonl", good_rows), tmp_path, IngestConfig(), ValidationConfig()
    )
    before = first.accepted_path.read_bytes()
    with pytest.raises(DataFormatError, match="overwritten"):
        ingest_file(first.accepted_path, tmp_path, IngestConfig(), ValidationConfig())
    assert first.accepted_path.read_bytes() == before
