"""One response a row (HelpSteer2's layout): rows sharing a prompt make pairs, and every input row
is accounted for, in pairs or in the quarantine with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from data_helpers import CORPUS, run_cli, write_jsonl

from alignment.data.formats import FileInfo, read_chunks, record_id, sniff_format
from alignment.data.formats.records import ReadOptions

FIXTURE = CORPUS / "formats" / "helpsteer2.jsonl"


def _read(path: Path, **options):
    files: list[FileInfo] = []
    records, malformed, pair_rows = [], [], {}
    for chunk in read_chunks(path, files=files, options=ReadOptions(**options), chunk_rows=4):
        records.extend(chunk.record_dicts())
        malformed.extend(chunk.malformed)
        assert not set(chunk.pair_rows) & set(pair_rows), "a row counted in two chunks"
        pair_rows.update(chunk.pair_rows)
        assert len(chunk.pair_rows) + len(chunk.malformed) == chunk.rows
    (info,) = files
    return records, malformed, pair_rows, info


def _pairs(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in records]


def test_rows_of_one_prompt_pair_by_helpfulness_and_every_row_is_accounted_for():
    records, malformed, pair_rows, info = _read(FIXTURE)
    assert info.detected_format == "per_response"
    assert info.rows_read == 11
    # three responses to one prompt (3, 3, 1): two pairs; their tie is skipped and counted
    assert _pairs(records) == [
        ("Seven is prime.", "Nine."),
        ("Two is the only even prime.", "Nine."),
        ("Simmer it for nine minutes, then cool it in cold water.", "Eggs are laid by hens."),
    ]
    first = records[0]
    assert first["prompt"] == [{"role": "user", "content": "Name a prime number."}]
    assert first["id"] == record_id(first["prompt"], first["chosen"], first["rejected"])
    assert (first["score_chosen"], first["score_rejected"]) == (3.0, 1.0)
    meta = json.loads(first["meta"])
    assert meta["rows"] == [0, 4] and meta["score"] == "helpfulness"
    assert meta["attributes_chosen"]["correctness"] == 3
    assert meta["attributes_rejected"]["helpfulness"] == 1
    # both source rows of each pair, and each row's pairs
    assert [json.loads(r["meta"])["rows"] for r in records] == [[0, 4], [2, 4], [6, 8]]
    assert pair_rows == {
        0: [records[0]["id"]],
        2: [records[1]["id"]],
        4: [records[0]["id"], records[1]["id"]],
        6: [records[2]["id"]],
        8: [records[2]["id"]],
    }
    reasons = sorted((m["row"], m["reasons"][0].split(":")[0]) for m in malformed)
    assert reasons == [
        (1, "tied_scores"),
        (3, "unpaired_response"),
        (5, "tied_scores"),
        (7, "bad_score"),
        (9, "tied_scores"),
        (10, "tied_scores"),
    ]
    bad = next(m for m in malformed if m["row"] == 7)
    assert "helpfulness must be a finite number, got 'high'" in bad["reasons"][0]
    assert json.loads(bad["raw"])["response"] == "Put it in water."
    # nothing lost: every input row is in a pair or in the quarantine, once
    assert len(pair_rows) + len(malformed) == info.rows_read
    assert info.counts == {
        "ranked_ties_skipped": 3,
        "per_response_unpaired": 1,
        "per_response_tied_rows": 4,
    }


def test_a_weighted_sum_breaks_ties_that_helpfulness_alone_leaves():
    weights = {"helpfulness": 1.0, "correctness": 0.5}
    records, malformed, pair_rows, _ = _read(FIXTURE, response_score=weights)
    assert ("Yes, a G-type main-sequence star.", "Yes.") in _pairs(records)
    # the capital-of-France responses tie on both: still skipped
    assert sorted(m["row"] for m in malformed) == [1, 3, 5, 7]
    assert json.loads(records[0]["meta"])["score"] == "1*helpfulness + 0.5*correctness"
    assert len(pair_rows) + len(malformed) == 11


def test_best_worst_quarantines_the_middle_response_with_its_reason(tmp_path):
    rows = [
        {"prompt": "p", "response": f"answer {i}", "helpfulness": score}
        for i, score in enumerate((4, 2, 0))
    ]
    path = write_jsonl(tmp_path / "hs.jsonl", rows)
    records, malformed, _, _ = _read(path, ranked_pairs="best_worst")
    assert _pairs(records) == [("answer 0", "answer 2")]
    assert [(m["row"], m["reasons"][0].split(":")[0]) for m in malformed] == [
        (1, "unused_by_policy")
    ]


def test_detection_tells_a_response_row_from_pairs_and_ranked_lists():
    assert sniff_format({"prompt": "p", "response": "r", "helpfulness": 3}) == "per_response"
    assert sniff_format({"prompt": "p", "chosen": "a", "rejected": "b"}) == "trl_standard"
    assert sniff_format({"prompt": "p", "responses": [{"text": "a", "score": 1}]}) == "ranked"


def test_cli_ingest_of_a_per_response_file_reports_its_pairs_and_quarantine(tmp_path):
    ws, out = tmp_path / "ws", tmp_path / "ingest.json"
    proc = run_cli(
        "data",
        "ingest",
        str(FIXTURE),
        "--json",
        str(out),
        "--set",
        "validation.max_rejected_fraction=0.7",
        "--set",
        "quality.near_duplicates.enabled=false",
        ws=ws,
        dataset="helpsteer",
    )
    assert "per_response" in proc.stdout
    paths = json.loads(out.read_text())
    report = json.loads(Path(paths["report_path"]).read_text())
    assert report["detected_format"] == "per_response"
    assert report["response_score"] == "helpfulness"
    assert report["input_rows"] == 11
    assert (report["accepted"], report["malformed"]) == (3, 6)
    assert report["malformed_reasons"] == {
        "bad_score": 1,
        "tied_scores": 4,
        "unpaired_response": 1,
    }
    assert report["read_counts"]["ranked_ties_skipped"] == 3
    accepted = pq.read_table(paths["accepted_path"]).to_pylist()
    assert [json.loads(r["meta"])["rows"] for r in accepted] == [[0, 4], [2, 4], [6, 8]]
    rejected = pq.read_table(paths["rejected_path"]).to_pylist()
    assert sorted(r["row"] for r in rejected) == [1, 3, 5, 7, 9, 10]
    assert all(r["raw"] for r in rejected)  # the raw row is kept, never lost
