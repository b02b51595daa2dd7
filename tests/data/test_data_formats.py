"""Readers and format detection: every supported format and file type, and unreadable files."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_helpers import conv, write_jsonl

from alignment.data.formats import read_preferences, record_id
from alignment.errors import DataFormatError

USER = [{"role": "user", "content": "What is 2 plus 2?"}]


def test_trl_standard_jsonl(tmp_path):
    path = write_jsonl(
        tmp_path / "std.jsonl", [{"prompt": "What is 2 plus 2?", "chosen": "4.", "rejected": "5."}]
    )
    result = read_preferences(path)
    assert result.detected_format == "trl_standard"
    (rec,) = result.records
    assert rec["prompt"] == USER
    assert rec["chosen"] == [{"role": "assistant", "content": "4."}]
    assert rec["rejected"] == [{"role": "assistant", "content": "5."}]
    assert rec["source"] == "std.jsonl" and rec["row"] == 0
    assert rec["id"] == record_id(rec["prompt"], rec["chosen"], rec["rejected"])
    assert len(rec["id"]) == 16 and rec["meta"] is None


def test_trl_conversational_json_array_keeps_extra_fields_as_meta(tmp_path):
    rows = [conv("Hi?", "Hello.", "Go away.", score_chosen=2, score_rejected="1.5", lang="en")]
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(rows))
    result = read_preferences(path)
    assert result.detected_format == "trl_conversational"
    (rec,) = result.records
    assert rec["score_chosen"] == 2.0 and rec["score_rejected"] == 1.5
    assert json.loads(rec["meta"]) == {"lang": "en"}


def test_implicit_prompt_conversational(tmp_path):
    prefix = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}]
    row = {
        "chosen": [*prefix, {"role": "assistant", "content": "Hello!"}],
        "rejected": [*prefix, {"role": "assistant", "content": "What."}],
    }
    (rec,) = read_preferences(write_jsonl(tmp_path / "imp.jsonl", [row])).records
    assert rec["prompt"] == prefix
    assert rec["chosen"] == [{"role": "assistant", "content": "Hello!"}]


def test_hh_transcripts_split_at_shared_prefix(tmp_path):
    shared = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: What is 2 plus 2?"
    row = {
        "chosen": shared + "\n\nAssistant: It is 4.",
        "rejected": shared + "\n\nAssistant: No idea.",
    }
    bad = {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}
    result = read_preferences(write_jsonl(tmp_path / "hh.jsonl", [row, bad]))
    assert result.detected_format == "hh"
    (rec,) = result.records
    assert rec["prompt"] == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2 plus 2?"},
    ]
    assert rec["chosen"] == [{"role": "assistant", "content": "It is 4."}]
    assert rec["rejected"] == [{"role": "assistant", "content": "No idea."}]
    assert result.malformed[0]["row"] == 1
    assert result.malformed[0]["reasons"][0].startswith("prefix_mismatch")


def test_sharegpt_parquet(tmp_path):
    rows = [
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "Hi"},
            ],
            "chosen": {"from": "gpt", "value": "Hello."},
            "rejected": {"from": "gpt", "value": "Bye."},
        }
    ]
    path = tmp_path / "sg.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = read_preferences(path)
    assert result.detected_format == "sharegpt"
    (rec,) = result.records
    assert rec["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert rec["chosen"] == [{"role": "assistant", "content": "Hello."}]


def test_ranked_csv_expands_all_ordered_pairs_or_best_against_worst(tmp_path):
    responses = [
        {"text": "ok", "score": 5},
        {"response": "best", "score": 9},
        {"text": "worst", "score": 1},
    ]
    tied = [{"text": "a", "score": 3}, {"text": "b", "score": 3}]
    path = tmp_path / "ranked.csv"
    path.write_text(
        "prompt,responses\n"
        f'"Rank me","{json.dumps(responses).replace(chr(34), chr(34) * 2)}"\n'
        f'"Tied","{json.dumps(tied).replace(chr(34), chr(34) * 2)}"\n'
    )
    result = read_preferences(path)
    assert result.detected_format == "ranked"
    assert result.rows_read == 2
    pairs = [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in result.records]
    assert pairs == [("best", "ok"), ("best", "worst"), ("ok", "worst")]
    assert [(r["score_chosen"], r["score_rejected"]) for r in result.records] == [
        (9.0, 5.0),
        (9.0, 1.0),
        (5.0, 1.0),
    ]
    assert {r["row"] for r in result.records} == {0}
    assert result.malformed[0]["reasons"][0].startswith("ranked_no_pair")

    best_worst = read_preferences(path, ranked_pairs="best_worst")
    assert [
        (r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in best_worst.records
    ] == [("best", "worst")]
    assert best_worst.rows_read == 2 and len(best_worst.malformed) == 1


def test_gzip_jsonl_and_truncated_gzip(tmp_path, good_rows):
    text = "".join(json.dumps(r) + "\n" for r in good_rows).encode()
    whole = tmp_path / "p.jsonl.gz"
    whole.write_bytes(gzip.compress(text))
    assert len(read_preferences(whole).records) == 10

    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(text)[:-30])
    result = read_preferences(cut)
    assert result.notes and "truncated" in result.notes[0]
    assert 0 < len(result.records) <= 10
    assert result.rows_read == len(result.records) + len(result.malformed)

    cut_json = tmp_path / "cut.json.gz"
    cut_json.write_bytes(gzip.compress(json.dumps(good_rows).encode())[:-30])
    with pytest.raises(DataFormatError, match=r"cut\.json\.gz"):
        read_preferences(cut_json)


def test_forced_format_is_honoured(tmp_path):
    row = {"prompt": "Q?", "chosen": "A.", "rejected": "B."}
    path = write_jsonl(tmp_path / "x.jsonl", [row])
    assert read_preferences(path, "trl_conversational").detected_format == "trl_conversational"
    forced = read_preferences(path, "sharegpt")
    assert forced.records == [] and forced.malformed[0]["reasons"][0].startswith("missing_field")


def test_detection_votes_over_first_rows(tmp_path):
    rows = [{"chosen": "garbage", "rejected": "x"}] + [
        {"prompt": f"Q{i}", "chosen": "A", "rejected": "B"} for i in range(5)
    ]
    result = read_preferences(write_jsonl(tmp_path / "v.jsonl", rows))
    assert result.detected_format == "trl_standard"
    assert [m["row"] for m in result.malformed] == [0]


@pytest.mark.parametrize("name", ["missing.jsonl", "data.txt", "data.xlsx"])
def test_unreadable_files_raise_naming_the_file(tmp_path, name):
    path = tmp_path / name
    if name != "missing.jsonl":
        path.write_text("x")
    with pytest.raises(DataFormatError, match=name.replace(".", r"\.")):
        read_preferences(path)


def test_broken_json_and_bad_parquet_raise(tmp_path):
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(DataFormatError, match=r"bad\.json"):
        read_preferences(tmp_path / "bad.json")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(DataFormatError, match=r"bad\.parquet"):
        read_preferences(tmp_path / "bad.parquet")


@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.csv", "e.parquet"])
def test_empty_files_give_zero_rows(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    result = read_preferences(path)
    assert (result.records, result.malformed, result.rows_read) == ([], [], 0)


def test_bom_and_crlf_written_here(tmp_path, good_rows):
    body = "\r\n".join(json.dumps(r) for r in good_rows[:3]) + "\r\n"
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    result = read_preferences(path)
    assert len(result.records) == 3 and not result.malformed
    assert result.records[2]["rejected"][0]["content"] == "It is 4."

    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfprompt,chosen,rejected\r\nQ?,Yes.,No.\r\n")
    (rec,) = read_preferences(csv_path).records
    assert rec["prompt"] == [{"role": "user", "content": "Q?"}]


def test_columnar_jsonl_reader_keeps_bad_lines_to_themselves(tmp_path):
    """Blocks Arrow reads whole; a block with a bad line is split until that line is alone."""
    good = [
        conv(f"Question {i}?", f"Answer {i}.", "No.", score_chosen=1, score_rejected=0.5)
        for i in range(300)
    ]
    lines = [json.dumps(r) for r in good]
    bad = {
        40: "{not json",
        41: json.dumps(conv("Q?", "A.", "B.", score_chosen="high")),  # kept: bad_score rule
        150: json.dumps({**conv("Q?", "A.", "B."), "meta": {"k": 1}}),  # another shape
        151: "",  # blank: no row
        299: json.dumps({"prompt": [{"role": "user"}], "chosen": "A.", "rejected": "B."}),
    }
    for at, line in sorted(bad.items()):
        lines.insert(at, line)
    path = tmp_path / "mixed.jsonl"
    path.write_text("\r\n".join(lines) + "\n", encoding="utf-8")
    result = read_preferences(path)
    assert result.rows_read == len(lines) - 1
    assert [(m["row"], m["reasons"][0].split(":")[0]) for m in result.malformed] == [
        (40, "invalid_json"),
        (299, "wrong_type"),
    ]
    assert len(result.records) == len(lines) - 3
    rows = [r["row"] for r in result.records]
    assert rows == sorted(rows) and 40 not in rows and 151 not in rows
    by_row = {r["row"]: r for r in result.records}
    assert by_row[41]["score_chosen"] == "high"
    assert json.loads(by_row[150]["meta"]) == {"k": 1}
    assert by_row[0]["score_chosen"] == 1.0
    for rec in result.records:
        assert rec["id"] == record_id(rec["prompt"], rec["chosen"], rec["rejected"])
