"""Rules added for streaming input: encoding, huge rows, folders, near-duplicates, tokens,
length bias and prompt leakage. Each asserts which rule quarantined which row."""

from __future__ import annotations

import gzip
import json
import resource

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_helpers import CORPUS, conv, write_jsonl

from alignment.config import IngestConfig, ValidationConfig
from alignment.data.formats import read_preferences
from alignment.data.ingest import ingest_file
from alignment.data.splits import leaked_prompts, split_by_prompt
from alignment.data.validate import Validator, validate_records
from alignment.errors import DataFormatError, ValidationFailed

LOOSE = ValidationConfig(max_rejected_fraction=1.0, min_rows=0)


def _reasons(rejected: pd.DataFrame) -> dict[tuple[str, int], list[str]]:
    return {
        (src, int(row)): [r.split(":", 1)[0] for r in reasons]
        for src, row, reasons in zip(
            rejected["source"], rejected["row"], rejected["reasons"], strict=True
        )
    }


def test_bad_utf8_bytes_quarantine_the_line_not_the_file(tmp_path):
    result = ingest_file(CORPUS / "bad_utf8.jsonl", tmp_path / "o", IngestConfig(), LOOSE)
    rejected = pd.read_parquet(result.rejected_path)
    assert _reasons(rejected) == {
        ("bad_utf8.jsonl", 1): ["bad_encoding"],
        ("bad_utf8.jsonl", 2): ["bad_encoding"],
    }
    assert "caf\\xe9" in rejected["raw"].iloc[0]  # the raw text shows the bad byte
    assert (result.accepted, result.rejected, result.report["input_rows"]) == (2, 2, 4)


def test_bad_bytes_in_a_csv_row_quarantine_that_row(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"prompt,chosen,rejected\nQ1?,Yes.,No.\nQ2 caf\xe9?,Yes.,No.\nQ3?,Yes.,No.\n")
    read = read_preferences(path)
    assert [m["row"] for m in read.malformed] == [1] and len(read.records) == 2
    assert read.malformed[0]["reasons"][0].startswith("bad_encoding")


def test_a_50mb_field_quarantines_its_line_without_loading_it(tmp_path):
    path = tmp_path / "huge.jsonl"
    with path.open("w") as fh:
        fh.write(json.dumps(conv("Small?", "Yes.", "No.")) + "\n")
        fh.write('{"prompt": "Big?", "chosen": "' + "x" * (50 << 20) + '", "rejected": "No."}\n')
        fh.write(json.dumps(conv("Small too?", "Yes.", "No.")) + "\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    read = read_preferences(path)
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(read.records) == 2 and [m["row"] for m in read.malformed] == [1]
    assert read.malformed[0]["reasons"][0].startswith("too_large: line of 52428")
    assert len(read.malformed[0]["raw"]) < 10_000  # the head only; the file keeps the rest
    assert grew_mb < 40  # the 50 MB line was never held whole


def test_huge_gzip_and_csv_rows_are_too_large(tmp_path):
    big = {"prompt": "Q?", "chosen": "y" * 5000, "rejected": "n"}
    gz = tmp_path / "g.jsonl.gz"
    gz.write_bytes(
        gzip.compress((json.dumps(conv("A?", "B.", "C.")) + "\n" + json.dumps(big)).encode())
    )
    cfg = IngestConfig(max_row_bytes=2048)
    result = ingest_file(gz, tmp_path / "o", cfg, LOOSE)
    assert _reasons(pd.read_parquet(result.rejected_path)) == {("g.jsonl.gz", 1): ["too_large"]}
    csv_path = tmp_path / "c.csv"
    csv_path.write_text(f"prompt,chosen,rejected\nQ?,{'y' * 5000},n\nQ2?,Y,N\n")
    result = ingest_file(csv_path, tmp_path / "o2", cfg, LOOSE)
    assert _reasons(pd.read_parquet(result.rejected_path)) == {("c.csv", 0): ["too_large"]}


def test_folder_of_mixed_formats_detects_each_file(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    write_jsonl(folder / "a_conv.jsonl", [conv("Q1?", "A.", "B."), "not an object"])
    (folder / "b_std.csv").write_text("prompt,chosen,rejected\nQ2?,Yes.,No.\nQ3?,Same.,Same.\n")
    hh = [
        {
            "chosen": "\n\nHuman: Q4?\n\nAssistant: Good.",
            "rejected": "\n\nHuman: Q4?\n\nAssistant: Bad.",
        }
    ]
    (folder / "c_hh.json").write_text(json.dumps(hh))
    sharegpt = [
        {
            "conversations": [{"from": "human", "value": "Q5?"}],
            "chosen": {"from": "gpt", "value": "Hi."},
            "rejected": {"from": "gpt", "value": "Bye."},
        }
    ]
    pq.write_table(pa.Table.from_pylist(sharegpt), folder / "sub" / "d_sg.parquet")
    ranked = [
        {
            "prompt": "Q6?",
            "responses": [
                {"text": "a", "score": 3},
                {"text": "b", "score": 2},
                {"text": "c", "score": 1},
            ],
        }
    ]
    (folder / "sub" / "e_ranked.jsonl.gz").write_bytes(
        gzip.compress(json.dumps(ranked[0]).encode())
    )
    (folder / "README.txt").write_text("not data")

    result = ingest_file(folder, tmp_path / "out", IngestConfig(), LOOSE)
    formats = {f["source"]: f["format"] for f in result.report["files"]}
    assert formats == {
        "a_conv.jsonl": "trl_conversational",
        "b_std.csv": "trl_standard",
        "c_hh.json": "hh",
        "sub/d_sg.parquet": "sharegpt",
        "sub/e_ranked.jsonl.gz": "ranked",
    }
    assert result.detected_format == "mixed"
    accepted = pd.read_parquet(result.accepted_path)
    assert sorted(accepted["source"].unique()) == sorted(
        set(formats) - {"b_std.csv"} | {"b_std.csv"}
    )
    assert (accepted["source"] == "sub/e_ranked.jsonl.gz").sum() == 3
    assert _reasons(pd.read_parquet(result.rejected_path)) == {
        ("a_conv.jsonl", 1): ["not_an_object"],
        ("b_std.csv", 1): ["chosen_equals_rejected"],
    }
    assert result.report["input_rows"] == 7 and result.accepted + result.rejected == 9


def test_forced_format_applies_to_every_file_of_a_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"prompt": "Q?", "chosen": "A", "rejected": "B"}])
    result = ingest_file(folder, tmp_path / "o", IngestConfig(format="sharegpt"), LOOSE)
    assert _reasons(pd.read_parquet(result.rejected_path)) == {("a.jsonl", 0): ["missing_field"]}


def test_unreadable_file_in_a_folder_is_named(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [conv("Q?", "A.", "B.")])
    (folder / "b.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(DataFormatError, match=r"b\.parquet"):
        ingest_file(folder, tmp_path / "o", IngestConfig(), LOOSE)
    assert not (tmp_path / "o" / "accepted.parquet").exists()


def test_duplicates_are_found_across_chunks_and_files(tmp_path):
    rows = [conv(f"Q{i}?", "A.", "B.") for i in range(5)]
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", rows)
    write_jsonl(folder / "b.jsonl", [rows[1], conv("q3", "C.", "D.")])
    result = ingest_file(folder, tmp_path / "o", IngestConfig(chunk_rows=2, validate_rows=2), LOOSE)
    assert _reasons(pd.read_parquet(result.rejected_path)) == {
        ("b.jsonl", 0): ["duplicate"],
        ("b.jsonl", 1): ["near_duplicate"],
    }


def test_chunked_output_is_deterministic_and_matches_unchunked_rows(tmp_path):
    rows = [conv(f"Question {i}?", f"Answer {i}.", "No.") for i in range(30)] + ["bad"]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    small = IngestConfig(chunk_rows=7, validate_rows=7)  # one GX run per read chunk
    a = ingest_file(src, tmp_path / "a", small, LOOSE)
    b = ingest_file(src, tmp_path / "b", small, LOOSE)
    whole = ingest_file(src, tmp_path / "w", IngestConfig(), LOOSE)
    assert a.accepted_path.read_bytes() == b.accepted_path.read_bytes()
    assert pd.read_parquet(a.accepted_path).equals(pd.read_parquet(whole.accepted_path))
    assert a.report["rule_failures"] == whole.report["rule_failures"]
    assert {e["rule"]: e["unexpected_count"] for e in a.report["expectations"]} == {
        e["rule"]: e["unexpected_count"] for e in whole.report["expectations"]
    }


def test_length_bias_fails_the_set(tmp_path):
    rows = [conv(f"Q{i}?", "A long and careful answer.", "No.") for i in range(60)]
    src = write_jsonl(tmp_path / "biased.jsonl", rows)
    with pytest.raises(
        ValidationFailed, match="length_bias: chosen is longer than rejected in 100"
    ):
        ingest_file(src, tmp_path / "o", IngestConfig(), ValidationConfig())
    ok = ingest_file(src, tmp_path / "o2", IngestConfig(), ValidationConfig(max_length_bias=1.0))
    assert ok.report["statistics"]["chosen_longer_fraction"] == 1.0
    assert ok.report["statistics"]["mean_log_length_ratio"] > 1
    few = write_jsonl(tmp_path / "few.jsonl", rows[:10])  # under length_bias_min_pairs
    assert ingest_file(few, tmp_path / "o3", IngestConfig(), ValidationConfig()).report["passed"]


def test_prompt_leakage_check_on_split_outputs(tmp_path):
    rows = [conv(f"Prompt number {i}?", "A.", "B.") for i in range(200)]
    df = pd.DataFrame(rows)
    train, evaluation = split_by_prompt(df, 0.2)
    assert leaked_prompts(train, evaluation) == [] and len(evaluation) > 0
    # near-duplicate spellings can hash to different sides; the split refuses to hand them out
    spellings = pd.DataFrame(
        [conv(f"Prompt {i}", "A.", "B.") for i in range(40)]
        + [conv(f"prompt {i}!", "A.", "B.") for i in range(40)]
    )
    with pytest.raises(ValidationFailed, match="prompt_leakage"):
        split_by_prompt(spellings, 0.5)
    assert leaked_prompts(spellings.iloc[:1], spellings.iloc[40:41]) == ["prompt 0"]
    # at ingest, near-duplicates are quarantined so no normalized prompt has two sides
    src = write_jsonl(tmp_path / "s.jsonl", spellings.to_dict("records"))
    result = ingest_file(
        src, tmp_path / "o", IngestConfig(), ValidationConfig(max_rejected_fraction=0.6)
    )
    stats = result.report["statistics"]
    assert stats["leaked_prompts"] == 0 and result.report["rule_failures"]["near_duplicate"] == 40
    assert "prompt_leakage" in result.report["set_rules"]


def test_leakage_is_a_set_level_failure_of_the_validator(tmp_path):
    validator = Validator(LOOSE, tmp_path, build_docs=False, eval_fraction=0.5)
    # as if one normalized prompt had been accepted on both sides
    validator._train_prompts.add(1)
    validator._eval_prompts.add(1)
    report, _ = validator.finish()
    assert report["passed"] is False and report["failures"][0].startswith("prompt_leakage: 1")


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory):
    """A whitespace word-level tokenizer saved as a local Hugging Face folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["q1", "q2", "q3", "q4", "a", "b", "c", "d", "e", "f", "yes", "no", "same", "start"]
    tok = Tokenizer(
        models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]")
    )
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)
    return str(folder)


def test_token_length_rules_with_the_configured_tokenizer(tmp_path, word_tokenizer):
    rows = [
        conv("q1", "a b", "c"),  # 3 tokens: fine
        conv("q2", "a b c d e f", "no"),  # 7 tokens > 5
        conv("q3", "start same same same a", "start same same same b"),  # equal once cut to 5
        conv("q4", "yes", "no"),
    ]
    src = write_jsonl(tmp_path / "t.jsonl", rows)
    cfg = ValidationConfig(tokenizer=word_tokenizer, max_tokens=5, max_rejected_fraction=1.0)
    result = ingest_file(src, tmp_path / "o", IngestConfig(), cfg)
    assert _reasons(pd.read_parquet(result.rejected_path)) == {
        ("t.jsonl", 1): ["too_many_tokens"],
        ("t.jsonl", 2): ["too_many_tokens", "identical_after_truncation"],
    }
    assert result.report["skipped_rules"] == []
    assert {"too_many_tokens", "identical_after_truncation"} <= {
        e["rule"] for e in result.report["expectations"]
    }


def test_token_rules_are_skipped_and_reported_without_a_tokenizer(tmp_path):
    read = read_preferences(CORPUS / "near_duplicates.jsonl")
    result = validate_records(read.records, [], LOOSE, tmp_path, build_docs=False)
    assert result.report["skipped_rules"] == ["too_many_tokens", "identical_after_truncation"]


def test_missing_tokenizer_folder_is_a_clear_error(tmp_path):
    from alignment.errors import ConfigError

    with pytest.raises(ConfigError, match=r"validation\.tokenizer"):
        Validator(ValidationConfig(tokenizer=str(tmp_path / "nope")), tmp_path)
