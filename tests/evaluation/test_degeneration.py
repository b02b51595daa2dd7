"""Degeneration figures on hand-made response sets whose values are known."""

from __future__ import annotations

import pytest

from alignment.evaluation.degeneration import (
    degeneration_metrics,
    distinct_n,
    most_repeated,
    response_words_mean,
    unique_response_rate,
)


def test_a_policy_collapsed_to_one_answer_scores_as_collapsed():
    collapsed = ["Excellent."] * 9 + ["excellent. "]  # case and spacing do not make it new
    assert unique_response_rate(collapsed) == pytest.approx(0.1)
    assert distinct_n(collapsed) == 0.0  # not one answer has two words
    assert response_words_mean(collapsed) == 1.0
    assert most_repeated(collapsed, 1) == [{"response": "Excellent.", "count": 10}]


def test_varied_answers_score_high_and_the_counts_are_exact():
    answers = ["the cat sat", "the cat ran", "a dog sat down"]
    assert unique_response_rate(answers) == 1.0
    # bigrams: (the cat) (cat sat) (the cat) (cat ran) (a dog) (dog sat) (sat down): 6 of 7
    assert distinct_n(answers, 2) == pytest.approx(6 / 7)
    assert response_words_mean(answers) == pytest.approx(10 / 3)
    metrics = degeneration_metrics(answers, "_champion")
    assert set(metrics) == {
        "unique_response_rate_champion",
        "distinct_2_champion",
        "response_words_mean_champion",
    }


def test_a_repeated_template_with_one_changing_word_keeps_distinct_2_low():
    template = [f"Great product, five stars {i}" for i in range(20)]
    assert unique_response_rate(template) == 1.0  # unique, yet the same sentence
    assert distinct_n(template) < 0.3


def test_no_responses_is_an_error_not_a_zero():
    with pytest.raises(ValueError, match="no responses"):
        unique_response_rate([])
