"""The validation suite on a corpus of bad inputs: which rule quarantined which row."""

from __future__ import annotations

import pytest
from data_helpers import CORPUS, conv, write_jsonl

from alignment.config import ValidationConfig
from alignment.data.formats import read_preferences
from alignment.data.validate import RULES, TOKEN_RULES, validate_records

LOOSE = ValidationConfig(max_rejected_fraction=1.0, min_rows=0)

# corpus file -> {row: reasons (rule names, or the prefix of a malformed reason)}
EXPECTED = {
    "broken_json_line.jsonl": {1: ["invalid_json"], 3: ["not_an_object"]},
    "empty.jsonl": {},
    "blank_lines.jsonl": {},
    "bom_crlf.jsonl": {},
    "wrong_types.jsonl": {
        1: ["wrong_type"],
        2: ["wrong_type"],
        3: ["wrong_type"],
        4: ["missing_field"],
    },
    "chosen_equals_rejected.jsonl": {
        1: ["chosen_equals_rejected"],
        3: ["empty_chosen", "empty_rejected", "chosen_equals_rejected"],
    },
    "control_chars.jsonl": {
        1: ["control_characters"],
        3: ["control_characters"],
        4: ["control_characters"],
    },
    "bad_scores.jsonl": {1: ["score_order"], 2: ["bad_score"], 4: ["bad_score"]},
    "roles.jsonl": {
        1: ["prompt_roles"],
        2: ["chosen_roles"],
        3: ["prompt_roles", "rejected_roles"],
        4: ["empty_prompt", "prompt_roles"],
    },
    "duplicates.jsonl": {2: ["duplicate"], 3: ["duplicate"]},
    "bad_utf8.jsonl": {1: ["bad_encoding"], 2: ["bad_encoding"]},
    # same prompt text again is fine (another pair); another spelling of it is not
    "near_duplicates.jsonl": {1: ["near_duplicate"], 2: ["near_duplicate"]},
    "many_broken.jsonl": {
        1: ["invalid_json"],
        3: ["invalid_json"],
        4: ["empty_prompt", "empty_chosen", "empty_rejected", "chosen_equals_rejected"],
    },
}


def _short(reason: str) -> str:
    return reason.split(":", 1)[0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_rows_are_quarantined_by_the_right_rule(name, tmp_path):
    read = read_preferences(CORPUS / name)
    result = validate_records(read.records, read.malformed, LOOSE, tmp_path, build_docs=False)
    got = {
        int(r): [_short(x) for x in reasons]
        for r, reasons in zip(result.rejected["row"], result.rejected["reasons"], strict=True)
    }
    assert got == EXPECTED[name]
    assert len(result.accepted) + len(result.rejected) == read.rows_read
    assert result.report["rows_in"] == read.rows_read
    assert set(result.accepted["row"]).isdisjoint(got)
    assert list(result.rejected["source"].unique()) in ([name], [])
    assert all(isinstance(raw, str) and raw for raw in result.rejected["raw"])


def test_report_counts_rules_and_gx_results(tmp_path):
    read = read_preferences(CORPUS / "bad_scores.jsonl")
    result = validate_records(read.records, read.malformed, LOOSE, tmp_path, build_docs=False)
    report = result.report
    assert report["rule_failures"]["bad_score"] == 2
    assert report["rule_failures"]["score_order"] == 1
    by_rule = {e["rule"]: e for e in report["expectations"]}
    assert set(by_rule) == set(RULES) - set(TOKEN_RULES)
    assert report["skipped_rules"] == list(TOKEN_RULES)
    assert (
        by_rule["score_order"]["expectation"] == "expect_column_pair_values_a_to_be_greater_than_b"
    )
    assert by_rule["bad_score"]["success"] is False and by_rule["duplicate"]["success"] is True
    # accepted rows keep numbers as floats
    assert list(result.accepted["score_chosen"]) == [0.9, 0.5, 1.0]


def test_max_chars_threshold(tmp_path):
    records = read_preferences(
        write_jsonl(
            tmp_path / "long.jsonl", [conv("Q?", "x" * 50, "y"), conv("Q2?", "x" * 10, "y")]
        )
    ).records
    result = validate_records(
        records, [], ValidationConfig(max_chars=20), tmp_path, build_docs=False
    )
    assert [list(r) for r in result.rejected["reasons"]] == [["too_long"]]


def test_set_level_rules_fail_the_report_but_return(tmp_path):
    read = read_preferences(CORPUS / "many_broken.jsonl")
    strict = ValidationConfig(max_rejected_fraction=0.2, min_rows=5)
    result = validate_records(read.records, read.malformed, strict, tmp_path, build_docs=False)
    assert result.report["passed"] is False
    assert len(result.report["failures"]) == 2
    assert result.report["failures"][0].startswith("max_rejected_fraction: 3 of 5")
    assert result.report["failures"][1].startswith("min_rows: 2 rows accepted")


def test_no_rows_at_all(tmp_path):
    result = validate_records([], [], ValidationConfig(min_rows=0), tmp_path)
    assert result.report["passed"] is True and result.accepted.empty and result.rejected.empty
    assert result.docs_path is not None and result.docs_path.is_file()  # own HTML summary
    failing = validate_records([], [], ValidationConfig(min_rows=1), tmp_path, build_docs=False)
    assert failing.report["passed"] is False


def test_data_docs_are_built(tmp_path, good_rows):
    records = read_preferences(write_jsonl(tmp_path / "g.jsonl", good_rows)).records
    result = validate_records(records, [], ValidationConfig(), tmp_path / "report")
    assert result.docs_path == tmp_path / "report" / "data_docs" / "index.html"
    assert result.docs_path.is_file()
    assert len(result.accepted) == 10 and result.rejected.empty
