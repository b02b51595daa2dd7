"""Formats from elsewhere: OpenAI's preference JSONL, LLaMA-Factory v1, content parts, UltraFeedback
style scored responses, Argilla 2 exports, and files with their own column names."""

from __future__ import annotations

import json
import typing

import pytest
from data_helpers import CORPUS, conv, write_jsonl

from alignment.config import IngestConfig
from alignment.data.formats import (
    FORMATS,
    FileInfo,
    read_chunks,
    read_preferences,
    record_id,
    sniff_format,
)
from alignment.data.formats.detect import COLUMN_KEYS
from alignment.data.formats.records import ReadOptions
from alignment.errors import DataFormatError

FIXTURES = CORPUS / "formats"
STACKEXCHANGE = {"prompt": "question", "chosen": "response_j", "rejected": "response_k"}


def _read(name: str, **options) -> tuple[list[dict], list[dict], FileInfo]:
    return _read_path(FIXTURES / name, ReadOptions(**options))


def _read_path(path, options: ReadOptions | None = None):
    """Records, malformed rows and the file's FileInfo (which reader read it, what it counted)."""
    files: list[FileInfo] = []
    records, malformed = [], []
    for chunk in read_chunks(path, files=files, options=options):
        records.extend(chunk.record_dicts())
        malformed.extend(chunk.malformed)
    for rec in records:
        assert rec["id"] == record_id(rec["prompt"], rec["chosen"], rec["rejected"])
    (info,) = files
    assert info.rows_read == len({r["row"] for r in records}) + len(malformed)
    return records, malformed, info


def _pairs(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in records]


def _reasons(malformed: list[dict]) -> list[tuple[int, str]]:
    return [(m["row"], m["reasons"][0].split(":")[0]) for m in malformed]


def test_openai_preference_jsonl_keeps_system_turns_and_multi_turn_prompts():
    records, malformed, info = _read("openai_preference.jsonl")
    assert info.detected_format == "openai_preference"
    first, second = records
    assert first["prompt"] == [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "How cold is San Francisco in winter?"},
    ]
    assert first["chosen"] == [
        {"role": "assistant", "content": "Mild: days are usually around 14 C."}
    ]
    assert first["rejected"] == [{"role": "assistant", "content": "Freezing, bring a parka."}]
    assert json.loads(first["meta"]) == {"input": {"tools": [], "parallel_tool_calls": True}}
    # text parts joined in order, as chat templates render them
    assert second["prompt"][1:] == [
        {"role": "assistant", "content": "7."},
        {"role": "user", "content": "Another, please."},
    ]
    assert _pairs([second]) == [("11.", "9.")]
    # an image part quarantines its row, naming where it is
    assert _reasons(malformed) == [(2, "non_text_content")]
    assert "input.messages[0].content[1]" in malformed[0]["reasons"][0]
    assert "'image_url'" in malformed[0]["reasons"][0]


def test_non_text_parts_can_be_dropped_and_are_counted():
    records, malformed, info = _read("openai_preference.jsonl", non_text_parts="drop")
    assert not malformed
    assert records[2]["prompt"] == [{"role": "user", "content": "What is in this picture?"}]
    assert info.counts["non_text_parts_dropped"] == 1


def test_llamafactory_v1_shared_prefix_is_the_prompt_and_loss_weights_are_kept():
    records, malformed, info = _read("llamafactory_v1.jsonl")
    assert info.detected_format == "llamafactory_v1"
    first, multi = records
    assert first["prompt"] == [
        {"role": "system", "content": "You are a careful translator."},
        {"role": "user", "content": "Translate to English: Bonjour."},
    ]
    assert _pairs(records) == [("Hello.", "Goodbye."), ("6.", "7.")]
    assert json.loads(first["meta"])["loss_weight"] == {
        "prompt": [0.0, 0.0],
        "chosen": [1.0],
        "rejected": [1.0],
    }
    assert [m["role"] for m in multi["prompt"]] == ["user", "assistant", "user"]
    assert json.loads(multi["meta"])["extra_info"] == "multi-turn"
    assert _reasons(malformed) == [(2, "prefix_mismatch")]


def test_content_parts_in_trl_rows_read_both_text_and_value_keys(tmp_path):
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "value": "2 plus 2?"}]
    rows = [
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": parts},
            ],
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "4."}]}],
            "rejected": [{"role": "assistant", "content": "5."}],
        },
        {
            "prompt": [{"role": "user", "content": [{"type": "audio", "audio": "clip.wav"}]}],
            "chosen": "Yes.",
            "rejected": "No.",
        },
    ]
    result = read_preferences(write_jsonl(tmp_path / "parts.jsonl", rows))
    (rec,) = result.records
    assert rec["prompt"][1] == {"role": "user", "content": "What is 2 plus 2?"}
    assert _pairs([rec]) == [("4.", "5.")]
    assert _reasons(result.malformed) == [(1, "non_text_content")]


def test_scored_responses_pair_by_policy_and_count_skipped_ties():
    records, malformed, info = _read("ultrafeedback.jsonl")
    assert info.detected_format == "ranked"
    best = "Soft rain on the roof / the garden drinks in silence / clouds walk slowly home"
    # 8 > 6.5 = 6.5 > 3: five ordered pairs, the tie between the two 6.5s skipped
    assert _pairs(records) == [
        (best, "Rain taps the window"),
        (best, "Grey sky, wet pavement"),
        (best, "Rain."),
        ("Rain taps the window", "Rain."),
        ("Grey sky, wet pavement", "Rain."),
    ]
    assert [(r["score_chosen"], r["score_rejected"]) for r in records][:3] == [
        (8.0, 6.5),
        (8.0, 6.5),
        (8.0, 3.0),
    ]
    assert json.loads(records[0]["meta"])["models"] == ["b", "a"]
    assert info.counts["ranked_ties_skipped"] == 1
    # a prompt whose responses all tie gives no pair: quarantined, not counted as a tie
    assert _reasons(malformed) == [(1, "ranked_no_pair")]

    # a pair row that also carries a completions column is read as the pair
    pair = {"prompt": "Q?", "chosen": "A.", "rejected": "B.", "completions": ["A.", "B."]}
    assert sniff_format(pair) == "trl_standard"

    best_worst, _, info = _read("ultrafeedback.jsonl", ranked_pairs="best_worst")
    assert _pairs(best_worst) == [(best, "Rain.")]
    assert info.counts["ranked_ties_skipped"] == 0


def test_argilla_nested_export_pairs_by_mean_rank_of_submitted_rankings():
    records, malformed, info = _read("argilla_records.json")
    assert info.detected_format == "argilla"
    assert _pairs(records) == [
        ("Paris.", "Lyon."),
        ("Whiskers.", "Cat."),
        ("Mr. Fluffington.", "Cat."),
    ]
    first = json.loads(records[0]["meta"])["argilla"]
    assert first["annotators"] == [
        "0f8c7d3e-0000-4000-8000-000000000001",
        "0f8c7d3e-0000-4000-8000-000000000002",
    ]
    assert first["question"] == "preference" and first["pair"] == ["response2", "response1"]
    # record 1: the discarded ranking is left out; the two submitted ones tie response1 and
    # response3 on mean rank 1.5, so that pair is skipped and counted
    cat = json.loads(records[1]["meta"])
    assert cat["argilla"]["mean_rank"] == {"response1": 1.5, "response3": 1.5, "response2": 3.0}
    assert len(cat["argilla"]["annotators"]) == 2
    assert cat["argilla"]["rankings"][1] == {"response3": 1.0, "response1": 2.0, "response2": 3.0}
    assert cat["id"] == "rec-1" and cat["suggestions"]["preference"]["agent"] == "judge-v1"
    assert info.counts["ranked_ties_skipped"] == 1
    assert _reasons(malformed) == [(2, "missing_field")]


def test_argilla_hub_export_reads_flat_columns_and_skips_drafts():
    records, malformed, info = _read("argilla_hub.jsonl")
    assert info.detected_format == "argilla"
    (rec,) = records
    assert rec["prompt"] == [{"role": "user", "content": "Is the sky blue?"}]
    assert _pairs(records) == [("Yes, on a clear day.", "Never.")]
    meta = json.loads(rec["meta"])
    assert meta["argilla"]["annotators"] == ["0f8c7d3e-0000-4000-8000-000000000001"]
    assert meta["status"] == "completed"
    assert _reasons(malformed) == [(1, "missing_field")]
    assert "no submitted ranking" in malformed[0]["reasons"][0]


def test_column_mapping_reads_a_file_with_its_own_column_names():
    records, malformed, info = _read("stackexchange.csv", columns=STACKEXCHANGE)
    assert info.detected_format == "trl_standard" and info.reader == "rows"
    assert not malformed
    assert records[0]["prompt"] == [
        {"role": "user", "content": "How do I reverse a list in Python?"}
    ]
    assert _pairs(records)[1] == (
        "It shelves uncommitted changes so you can reapply them later.",
        "It deletes your work.",
    )
    # the columns not mapped stay in meta; an empty question is left for the validation rule
    assert json.loads(records[0]["meta"])["qid"] == "101"
    assert records[2]["prompt"] == [{"role": "user", "content": ""}]


def test_unmatched_file_names_the_columns_seen_and_the_formats_tried():
    with pytest.raises(DataFormatError) as caught:
        read_preferences(FIXTURES / "stackexchange.csv")
    message = str(caught.value)
    assert "stackexchange.csv" in message
    assert "date, metadata, qid, question, response_j, response_k" in message
    assert all(fmt in message for fmt in FORMATS)
    assert "ingest.columns" in message and "--format" in message


def test_a_mapped_column_missing_from_a_row_is_that_rows_reason(tmp_path):
    rows = [
        {"question": "Q1?", "response_j": "A.", "response_k": "B."},
        {"question": "Q2?", "response_j": "A."},
        {"question": "Q3?", "response_j": "A.", "response_k": "B.", "prompt": "clash"},
    ]
    path = write_jsonl(tmp_path / "own.jsonl", rows)
    result = read_preferences(path, options=ReadOptions(columns=STACKEXCHANGE))
    assert len(result.records) == 1
    assert [(m["row"], m["reasons"][0]) for m in result.malformed] == [
        (1, "missing_field: response_k (ingest.columns.rejected)"),
        (
            2,
            "wrong_type: the row has its own prompt column and ingest.columns maps another onto it",
        ),
    ]
    with pytest.raises(DataFormatError, match="answer"):
        read_preferences(path, options=ReadOptions(columns={"answer": "response_j"}))


def test_the_columnar_reader_still_reads_plain_conversational_jsonl(tmp_path, good_rows):
    plain = write_jsonl(tmp_path / "plain.jsonl", good_rows)
    _, _, info = _read_path(plain)
    assert info.reader == "columnar" and info.detected_format == "trl_conversational"
    std = write_jsonl(tmp_path / "std.jsonl", [{"prompt": "Q?", "chosen": "A", "rejected": "B"}])
    assert _read_path(std)[2].reader == "columnar"
    # content parts in the first rows, or a column mapping, take the row reader
    parts = [
        {
            **conv("Q?", "A.", "B."),
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "A."}]}],
        }
    ]
    assert _read_path(write_jsonl(tmp_path / "parts.jsonl", parts))[2].reader == "rows"
    mapped = ReadOptions(columns={"prompt": "prompt"})
    assert _read_path(plain, mapped)[2].reader == "rows"


def test_content_parts_past_the_sniffed_rows_still_read_in_the_columnar_reader(tmp_path):
    rows = [conv(f"Q{i}?", f"A{i}.", "B.") for i in range(300)]
    rows[250]["prompt"][0]["content"] = [
        {"type": "text", "text": "Late "},
        {"type": "text", "text": "parts?"},
    ]
    records, malformed, info = _read_path(write_jsonl(tmp_path / "late.jsonl", rows))
    assert info.reader == "columnar" and not malformed and len(records) == 300
    assert records[250]["prompt"][0]["content"] == "Late parts?"


def test_config_offers_exactly_the_formats_and_column_keys_the_readers_know():
    fields = IngestConfig.model_fields
    assert set(typing.get_args(fields["format"].annotation)) == {"auto", *FORMATS}
    key_type = typing.get_args(fields["columns"].annotation)[0]
    assert set(typing.get_args(key_type)) == set(COLUMN_KEYS)
