"""The oracle task's pieces: lexicon scoring, the grammar, Bradley-Terry labelling, statistics."""

from __future__ import annotations

import math

import pytest

from alignment.oracle import task


def test_sentiment_is_the_mean_valence_of_lexicon_words():
    assert task.sentiment("The battery is great.") == 1.0
    assert task.sentiment("The battery is great but slow.") == pytest.approx(0.25)
    assert task.sentiment("I hate the lid. It feels flimsy.") == pytest.approx(-0.75)
    # neutral lexicon words count in the mean; words outside the lexicon do not
    assert task.sentiment("The screen is good and black.") == pytest.approx(0.25)
    assert task.sentiment("Nothing to say about it.") == 0.0
    assert task.sentiment("GREAT!!!") == 1.0


def test_oracle_reward_counts_valence_per_topic_of_the_asked_product():
    # each aspect and the verdict on the product count once, out of three topics wanted
    assert task.oracle_reward("The battery is great.", "phone") == pytest.approx(1 / 3)
    full = "The price is great. I love the design. Overall, a superb kettle."
    assert task.oracle_reward(full, "kettle") == 1.0
    assert task.oracle_reward("The battery is great but slow.", "phone") == pytest.approx(0.25 / 3)
    assert task.oracle_reward("I hate the lid. The handle is flimsy.", "kettle") == pytest.approx(
        -0.5
    )
    # an aspect said twice is averaged, not counted twice: repetition earns nothing
    assert task.oracle_reward("The lid is great. The lid is great.", "kettle") == pytest.approx(
        1 / 3
    )
    # tone without a topic says nothing a reader can use
    for vague in ("Excellent.", "GREAT!!!", "It feels superb.", "great great great", ""):
        assert task.oracle_reward(vague, "kettle") == 0.0
    # a review of another product is off-topic, however glowing
    assert task.oracle_reward(full, "phone") == 0.0
    assert task.oracle_reward(full) == 1.0  # no prompt: any product is on topic
    assert task.prompt_oracle_reward("Review of the kettle:", full) == 1.0
    assert task.prompt_oracle_reward("Review of the lamp:", full) == 0.0


def test_collapsed_and_off_topic_policies_score_clearly_below_informative_reviews():
    """The templates a PPO run collapsed to under the old lexicon-mean oracle, and reviews of the
    wrong product, against the grammar's informative positive reviews of the asked product."""
    import random

    rng = random.Random(0)
    prompts = [task.prompt_text(p, t) for p in task.PRODUCTS for t in range(4)]
    collapsed = ["Excellent.", "Great!", "It feels wonderful.", "Superb superb superb."]
    informative, off_topic = [], []
    for prompt in prompts:
        product = task.product_of(prompt)
        other = task.PRODUCTS[(task.PRODUCTS.index(product) + 1) % len(task.PRODUCTS)]
        informative.append(
            f"The {rng.choice(task.ASPECTS[:8])} is great. "
            f"I love the {rng.choice(task.ASPECTS[8:])}. Overall, a superb {product}."
        )
        off_topic.append(f"The battery is great. Overall, a superb {other}.")

    def mean_reward(texts):
        return sum(
            task.prompt_oracle_reward(p, texts[i % len(texts)]) for i, p in enumerate(prompts)
        ) / len(prompts)

    assert mean_reward(informative) == 1.0
    assert mean_reward(collapsed) == 0.0
    assert mean_reward(off_topic) == 0.0
    # the degeneration the old oracle missed is visible in the text statistics
    stats = task.text_stats([collapsed[i % 4] for i in range(len(prompts))])
    assert stats["unique_response_rate"] < 0.05 and stats["length_mean"] < 3


def test_every_grammar_review_scores_by_its_sentiment():
    import random

    rng = random.Random(0)
    for product in task.PRODUCTS[:10]:
        for _ in range(20):
            assert task.oracle_reward(task.review(product, "positive", rng), product) >= 0
            assert task.oracle_reward(task.review(product, "negative", rng), product) <= 0
            assert task.oracle_reward(task.review(product, "neutral", rng), product) == 0
    # the grammar covers the whole range: some reviews are fully informative
    best = max(task.oracle_reward(task.review("lamp", "positive", rng), "lamp") for _ in range(200))
    assert best == 1.0


def test_prompt_split_is_disjoint_stable_and_covers_every_prompt():
    split = task.split_prompts()
    train, validation, test = set(split.train), set(split.validation), set(split.test)
    assert not train & validation and not train & test and not validation & test
    assert sorted(split.train + split.validation + split.test) == sorted(task.all_prompts())
    assert task.split_prompts() == split
    # the test split holds every prompt of the held-out products, which appear nowhere else
    assert len(split.test_products) == 8
    seen = {task.product_of(p) for p in split.train + split.validation}
    assert not seen & set(split.test_products)
    for product in split.test_products:
        assert {task.prompt_text(product, t) for t in range(4)} <= test
    # ... and held-out phrasings of the other products; validation has only those
    assert {task.product_of(p) for p in test} - set(split.test_products)
    assert 0.1 < len(split.validation) / len(task.all_prompts()) < 0.2
    assert 0.25 < len(split.test) / len(task.all_prompts()) < 0.45
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
        assert record["score_chosen"] is None  # nobody labelled a demonstration
        assert task.oracle_scores(record)[0] == task.oracle_reward(record["chosen"][0]["content"])
        assert len(record["id"]) == 16


@pytest.mark.parametrize(
    ("temperature", "expected"), [(0.25, 1 / (1 + math.exp(-2))), (1.0, 1 / (1 + math.exp(-0.5)))]
)
def test_bt_labels_follow_the_bradley_terry_probability(temperature, expected):
    # oracle rewards 1.0 and 0.5
    a = "The lid is great. I love the price. Overall, a great lamp."
    b = "The lid is great but black. I love the price."
    n = 4000
    records = task.label_pairs(["Review of the lamp:"] * n, [a] * n, [b] * n, temperature, seed=3)
    rate = sum(r["chosen"][0]["content"] == a for r in records) / n
    assert task.preference_probability(1.0, 0.5, temperature) == pytest.approx(expected)
    assert rate == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / n))
    # the oracle rewards stay attached to their texts, whichever side a text lands on
    for r in records[:50]:
        assert task.oracle_scores(r)[0] == task.oracle_reward(r["chosen"][0]["content"], "lamp")


def test_a_records_scores_are_what_the_annotator_perceived_not_the_oracle_order():
    # oracle rewards 1.0 and 0.5
    a = "The lid is great. I love the price. Overall, a great lamp."
    b = "The lid is great but black. I love the price."
    n = 400
    records = task.label_pairs(["Review of the lamp:"] * n, [a] * n, [b] * n, 0.25, seed=3)
    flipped = [r for r in records if r["chosen"][0]["content"] == b]
    assert flipped  # the noise flips some labels...
    # ... and the scores agree with the label the annotator gave, never with the hidden order
    assert all(r["score_chosen"] > r["score_rejected"] for r in records)
    assert {r["score_chosen"] for r in records}.isdisjoint({1.0, 0.5})
    assert all(task.oracle_scores(r) == (0.5, 1.0) for r in flipped)
    assert task.label_agreement(records) == pytest.approx(1 - len(flipped) / n)


def test_noiseless_labels_always_follow_the_oracle_and_ties_are_coin_flips():
    a, b = "The lid is superb.", "The lid is awful."
    records = task.label_pairs(
        ["Review of the fan:"] * 200, [b] * 100 + [a] * 100, [a] * 100 + [b] * 100, 0.0
    )
    assert task.label_agreement(records) == 1.0
    tie = task.label_pairs(
        ["Review of the fan:"] * 400, ["The lid is good."] * 400, ["The lid is nice."] * 400, 0.0
    )
    share = sum(r["chosen"][0]["content"] == "The lid is good." for r in tie) / 400
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
