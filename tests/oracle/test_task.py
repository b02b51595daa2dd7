"""The oracle task's pieces: lexicon scoring, the grammar, Bradley-Terry labelling, statistics."""

from __future__ import annotations

import math

import pytest

from alignment.oracle import task


def test_oracle_reward_is_the_mean_valence_of_lexicon_words():
    assert task.oracle_reward("The battery is great.") == 1.0
    assert task.oracle_reward("The battery is great but slow.") == pytest.approx(0.25)
    assert task.oracle_reward("I hate the lid. It feels flimsy.") == pytest.approx(-0.75)
    # neutral lexicon words count in the mean; words outside the lexicon do not
    assert task.oracle_reward("The screen is good and black.") == pytest.approx(0.25)
    assert task.oracle_reward("Nothing to say about it.") == 0.0
    assert task.oracle_reward("") == 0.0
    # case and punctuation do not matter; repeating a word earns nothing over saying it once
    assert task.oracle_reward("GREAT!!!") == 1.0
    assert task.oracle_reward("great great great great") == task.oracle_reward("great")


def test_every_grammar_review_scores_by_its_sentiment():
    import random

    rng = random.Random(0)
    for product in task.PRODUCTS[:10]:
        for _ in range(20):
            assert task.oracle_reward(task.review(product, "positive", rng)) > 0
            assert task.oracle_reward(task.review(product, "negative", rng)) < 0
            assert task.oracle_reward(task.review(product, "neutral", rng)) == 0


def test_prompt_split_is_disjoint_stable_and_covers_every_prompt():
    split = task.split_prompts(0.2)
    assert not set(split.train) & set(split.held_out)
    assert sorted(split.train + split.held_out) == sorted(task.all_prompts())
    assert 0.1 < len(split.held_out) / len(task.all_prompts()) < 0.3
    assert task.split_prompts(0.2) == split
    assert task.product_of("Write a short review of the kettle.") == "kettle"
    with pytest.raises(ValueError):
        task.product_of("What is 2 plus 2?")


def test_sft_records_are_canonical_and_deterministic():
    prompts = task.split_prompts().train[:3]
    records = task.sft_records(prompts, per_prompt=4, seed=7)
    assert len(records) == 12
    assert records == task.sft_records(prompts, per_prompt=4, seed=7)
    assert records != task.sft_records(prompts, per_prompt=4, seed=8)
    for record in records:
        assert record["prompt"][0]["role"] == "user"
        assert record["chosen"][0]["role"] == "assistant"
        assert record["score_chosen"] == task.oracle_reward(record["chosen"][0]["content"])
        assert len(record["id"]) == 16


@pytest.mark.parametrize(
    ("temperature", "expected"), [(0.25, 1 / (1 + math.exp(-2))), (1.0, 1 / (1 + math.exp(-0.5)))]
)
def test_bt_labels_follow_the_bradley_terry_probability(temperature, expected):
    a, b = "The lid is great.", "The lid is great but black."  # oracle rewards 1.0 and 0.5
    n = 4000
    records = task.label_pairs(["Review of the lamp:"] * n, [a] * n, [b] * n, temperature, seed=3)
    rate = sum(r["chosen"][0]["content"] == a for r in records) / n
    assert task.preference_probability(1.0, 0.5, temperature) == pytest.approx(expected)
    assert rate == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / n))
    # scores stay attached to their texts, whichever side a text lands on
    for r in records[:50]:
        assert r["score_chosen"] == task.oracle_reward(r["chosen"][0]["content"])


def test_noiseless_labels_always_follow_the_oracle_and_ties_are_coin_flips():
    a, b = "It feels superb.", "It feels awful."
    records = task.label_pairs(
        ["Review of the fan:"] * 200, [b] * 100 + [a] * 100, [a] * 100 + [b] * 100, 0.0
    )
    assert task.label_agreement(records) == 1.0
    tie = task.label_pairs(
        ["Review of the fan:"] * 400, ["It feels good."] * 400, ["It feels nice."] * 400, 0.0
    )
    share = sum(r["chosen"][0]["content"] == "It feels good." for r in tie) / 400
    assert 0.4 < share < 0.6
    assert math.isnan(task.label_agreement(tie))


def test_labelling_is_deterministic_and_skips_identical_or_empty_pairs():
    prompts = ["Review of the fan:"] * 3
    a = ["It feels good.", "It feels bad.", ""]
    b = ["It feels good.", "It feels great.", "It feels bad."]
    first = task.label_pairs(prompts, a, b, 0.5, seed=1)
    assert len(first) == 1
    assert first == task.label_pairs(prompts, a, b, 0.5, seed=1)
    with pytest.raises(ValueError):
        task.label_pairs(prompts, a[:2], b, 0.5)


def test_text_stats_expose_repetition_and_collapse():
    varied = ["The lid is great.", "I love the cable.", "It feels superb."]
    stats = task.text_stats(varied)
    assert stats["repetition_rate"] == 0.0
    assert stats["unique_response_rate"] == 1.0
    assert stats["length_mean"] == pytest.approx(11 / 3)
    degenerate = task.text_stats(["great great great great great"] * 3)
    assert degenerate["repetition_rate"] == pytest.approx(0.75)
    assert degenerate["unique_response_rate"] == pytest.approx(1 / 3)
    assert degenerate["distinct_1"] < stats["distinct_1"]
    assert task.text_stats([""])["empty_rate"] == 1.0


def test_every_grammar_word_is_known_and_garbled_words_are_counted():
    import random

    rng = random.Random(1)
    reviews = [task.review(p, s, rng) for p in task.PRODUCTS for s in task.SENTIMENTS]
    assert task.off_grammar_rate(reviews) == 0.0
    assert task.off_grammar_rate(["Overall, a fantastica heasbcen."]) == pytest.approx(0.5)
    assert task.text_stats(["The lid is great."])["off_grammar_rate"] == 0.0
