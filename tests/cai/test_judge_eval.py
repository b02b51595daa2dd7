"""The human-labelled judge set: it validates, it is scored right, and the judge runs on it."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from alignment.cai.judge_eval import (
    DEFAULT_JUDGE_EVAL,
    LabelledPair,
    agreement,
    agreement_report,
    bootstrap_ci,
    judge_labelled_pairs,
    load_judge_eval,
    longer_choice,
)
from alignment.constitution import load_constitution
from alignment.errors import DataFormatError

CORE = ("serious-harm", "non-evasive", "honesty", "helpfulness")


@pytest.fixture(scope="module")
def constitution():
    return load_constitution()


@pytest.fixture(scope="module")
def shipped(constitution):
    return load_judge_eval(constitution=constitution)


def _pair(label: str, a: str = "short", b: str = "a longer one", principle: str = "honesty"):
    return LabelledPair("x", principle, "clear", "Q?", a, b, label, "why")


# --- the shipped set ----------------------------------------------------------------------


def test_shipped_set_covers_the_constitution_and_both_positions(shipped, constitution):
    names = {p.name for p in constitution.principles}
    assert 40 <= len(shipped) <= 60
    assert {p.principle for p in shipped} <= names
    assert len({p.id for p in shipped}) == len(shipped)
    per_principle = Counter(p.principle for p in shipped)
    for name in CORE:
        assert per_principle[name] >= 8, name
    for name in CORE:
        labels = Counter(p.label for p in shipped if p.principle == name)
        assert labels["A"] >= 3 and labels["B"] >= 3, (name, labels)
    assert {p.difficulty for p in shipped} == {"clear", "hard"}
    # the length baseline must not be the answer: some better responses are the shorter one
    longer_right = agreement(longer_choice(shipped), [p.label for p in shipped])
    assert 0 < sum(longer_right) < len(shipped)


def test_shipped_file_is_what_its_generator_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_cai_judge_eval", DEFAULT_JUDGE_EVAL.with_name("make_cai_judge_eval.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [json.loads(line) for line in DEFAULT_JUDGE_EVAL.read_text().splitlines()]
    assert rows == module.build_rows()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"principle": "kindness"}, "principle 'kindness' is not in constitution"),
        ({"label": "C"}, "label 'C' must be 'A' or 'B'"),
        ({"response_b": "same"}, "are the same"),
        ({"rationale": ""}, "non-empty string 'rationale'"),
    ],
)
def test_bad_rows_are_refused_with_their_line(tmp_path, constitution, change, message):
    good = {
        "id": "r1", "principle": "honesty", "difficulty": "clear", "prompt": "Q?",
        "response_a": "same", "response_b": "other", "label": "A", "rationale": "why",
    }  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "r2", **change}) + "\n")
    with pytest.raises(DataFormatError, match=f"pairs.jsonl:2: .*{message}"):
        load_judge_eval(path, constitution)


# --- scoring on known probabilities ---------------------------------------------------------


def test_agreement_sides_with_the_label_and_halves_ties():
    assert agreement([0.9, 0.2, 0.4, 0.5, 0.7], ["A", "B", "A", "B", "B"]) == [1, 1, 0, 0.5, 0]
    with pytest.raises(ValueError):
        agreement([0.9], ["A", "B"])


def test_report_on_stubbed_probabilities():
    pairs = [
        _pair("A", a="the full answer, long", b="no", principle="helpfulness"),  # longer right
        _pair("B", a="made up at length", b="unsure", principle="honesty"),  # longer wrong
        _pair("A", a="no", b="a longer one", principle="honesty"),  # longer wrong
        _pair("B", a="x", b="yy", principle="honesty"),  # longer right
    ]
    p_a = [0.8, 0.3, 0.6, 0.9]  # judge: right, right, right, wrong
    first = [0.9, 0.4, 0.7, 0.95]
    second = [0.7, 0.2, 0.4, 0.85]  # pair 3: the two orders disagree
    report = agreement_report(pairs, p_a, first, second, seed=1)
    assert report["agreement"]["rate"] == pytest.approx(0.75)
    assert report["longer_baseline"]["rate"] == pytest.approx(0.5)
    assert report["agreement_vs_longer_baseline"] == pytest.approx(1.5)
    assert report["agreement_minus_longer_baseline"]["diff"] == pytest.approx(0.25)
    assert report["always_a_baseline"] == pytest.approx(0.5)
    assert report["per_principle"]["honesty"]["n"] == 3
    assert report["per_principle"]["honesty"]["rate"] == pytest.approx(2 / 3)
    assert report["per_principle"]["helpfulness"]["rate"] == 1.0
    assert report["mean_confidence"] == pytest.approx((0.8 + 0.7 + 0.6 + 0.9) / 4)
    assert report["mean_p_human_choice"] == pytest.approx((0.8 + 0.7 + 0.6 + 0.1) / 4)
    assert report["agreement_a_first_only"] == pytest.approx(0.75)
    assert report["order_consistency"] == pytest.approx(0.75)
    low, high = report["agreement"]["ci95"]
    assert 0.0 <= low <= 0.75 <= high <= 1.0


def test_bootstrap_interval():
    assert bootstrap_ci([1.0] * 10) == (1.0, 1.0)
    assert bootstrap_ci([]) is None
    low, high = bootstrap_ci([1.0] * 30 + [0.0] * 30, seed=3)
    assert low < 0.5 < high and high - low < 0.4
    assert bootstrap_ci([1.0, 0.0] * 20, seed=5) == bootstrap_ci([1.0, 0.0] * 20, seed=5)


# --- the judge on the tiny model ------------------------------------------------------------


def test_judge_runs_on_labelled_pairs_and_is_order_free(tiny_lm, shipped, constitution):
    model, tokenizer = tiny_lm
    rows = [p for name in CORE for p in shipped if p.principle == name][::6][:6]
    report, per_pair = judge_labelled_pairs(model, tokenizer, rows, constitution, batch_size=4)
    assert report["pairs"] == len(rows) == len(per_pair)
    assert sum(g["n"] for g in report["per_principle"].values()) == len(rows)
    recomputed = agreement([r["p_a"] for r in per_pair], [p.label for p in rows])
    assert report["agreement"]["rate"] == pytest.approx(sum(recomputed) / len(rows))
    # the same pairs with the responses swapped and the labels flipped score the same
    swapped = [
        LabelledPair(
            p.id, p.principle, p.difficulty, p.prompt, p.response_b, p.response_a,
            "B" if p.label == "A" else "A", p.rationale,
        )
        for p in rows
    ]  # fmt: skip
    again, again_rows = judge_labelled_pairs(model, tokenizer, swapped, constitution, batch_size=4)
    for x, y in zip(per_pair, again_rows, strict=True):
        assert x["p_a"] + y["p_a"] == pytest.approx(1.0, abs=1e-4)
    assert again["agreement"]["rate"] == pytest.approx(report["agreement"]["rate"])


def test_length_debiasing_removes_a_pure_length_lean():
    import math

    from alignment.cai.judge_eval import length_debiased

    len_a, len_b = [10, 40, 20, 80, 30], [40, 10, 20, 20, 90]
    x = [math.log(a / b) for a, b in zip(len_a, len_b, strict=True)]
    mx = sum(x) / len(x)
    raw = [0.8, -0.4, 1.0, 0.0, -0.6]
    k = sum((xi - mx) * r for xi, r in zip(x, raw, strict=True)) / sum((xi - mx) ** 2 for xi in x)
    # a length-free opinion (uncorrelated with the length ratio) plus a lean of 1.5 per log ratio
    opinion = [r - k * (xi - mx) for r, xi in zip(raw, x, strict=True)]
    p_a = [1 / (1 + math.exp(-(o + 1.5 * xi))) for o, xi in zip(opinion, x, strict=True)]
    debiased, slope = length_debiased(p_a, len_a, len_b)
    assert slope == pytest.approx(1.5)
    assert debiased == pytest.approx([1 / (1 + math.exp(-o)) for o in opinion])
    assert [p > 0.5 for p in p_a] != [p > 0.5 for p in debiased]  # the lean decided some pairs
    assert length_debiased([0.7], [5], [9]) == ([pytest.approx(0.7)], 0.0)


def test_few_shot_judge_sees_worked_verdicts_in_both_orders(tiny_lm, shipped, constitution):
    from alignment.cai.feedback import ANSWER_PREFIX, judge_question, judge_shots

    shots = judge_shots(constitution, 1)
    example = constitution.examples[0]
    assert [t["role"] for t in shots] == ["user", "assistant", "user", "assistant"]
    assert [t["content"] for t in shots[1::2]] == [ANSWER_PREFIX + "(B)", ANSWER_PREFIX + "(A)"]
    assert shots[0]["content"].index(example.response) < shots[0]["content"].index(example.revision)
    assert judge_question("Q?", "a", "b", "Which?", shots)[:4] == shots
    model, tokenizer = tiny_lm
    report, rows = judge_labelled_pairs(
        model, tokenizer, shipped[:4], constitution, few_shot=1, batch_size=4
    )
    zero, _ = judge_labelled_pairs(model, tokenizer, shipped[:4], constitution, batch_size=4)
    assert report["pairs"] == 4 and len(rows) == 4
    assert report["mean_confidence"] != zero["mean_confidence"]  # the shots reach the model
