"""The oracle task: short product reviews from a small grammar, scored by what a reader wants.

The "human preference" is a known function, as in the DPO paper's controlled-sentiment
experiment, but one a collapsed or off-topic policy cannot game: a reader wants a positive
review *of the asked product* that says something about it. The oracle reward counts valence per
topic the review talks about (each product aspect it mentions, and a verdict naming the asked
product), each topic once, and divides by TOPICS_WANTED (in [-1, 1]): "Excellent." names no
topic and scores 0; a review that names another product is off-topic and scores 0; repeating
a sentence earns nothing. `sentiment` is the plain lexicon valence (what a review's tone is,
whatever it is about). Preference pairs are labelled
by a simulated annotator who perceives each response's oracle reward plus Gumbel noise of scale
`temperature` and picks the higher: response A is chosen with probability
sigmoid((r(A) - r(B)) / temperature) (Bradley-Terry). A record's scores are what the annotator
perceived; the noiseless oracle rewards are kept in its meta, never in the scores.

Prompts split three ways: training, validation (for choosing hyperparameters) and test (for
reporting). The test split holds every prompt of a fifth of the products, never seen in
training, plus held-out phrasings of the other products; the validation split holds held-out
phrasings only. The oracle ignores the prompt, so the held-out phrasings test only that the
policy copes with an unseen template; the held-out products test that it writes about a product
it never wrote about.

Everything here is plain Python, seeded, with no model: prompts, the SFT corpus, the oracle,
the noisy labelling into canonical preference records, and text statistics.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PRODUCTS = (
    "phone", "laptop", "kettle", "blender", "backpack", "headset", "camera", "lamp",
    "jacket", "bicycle", "keyboard", "watch", "tent", "printer", "speaker", "toaster",
    "mattress", "drill", "monitor", "chair", "desk", "mouse", "router", "tablet",
    "stroller", "umbrella", "suitcase", "heater", "fan", "vacuum", "oven", "mixer",
    "guitar", "scooter", "charger", "notebook", "wallet", "helmet", "pillow", "thermos",
)  # fmt: skip
ASPECTS = (
    "battery", "screen", "price", "design", "sound", "build", "handle", "finish",
    "size", "weight", "delivery", "packaging", "colour", "manual", "cable", "lid",
)  # fmt: skip
PROMPT_TEMPLATES = (
    "Review of the {product}:",
    "Write a short review of the {product}.",
    "What do you think of the {product}?",
    "Tell me about the {product} you bought.",
)

# Valence of each lexicon word; the oracle averages them over the words a response contains.
POSITIVE_ADJECTIVES = {
    "excellent": 1.0, "wonderful": 1.0, "superb": 1.0, "fantastic": 1.0, "great": 1.0,
    "good": 0.5, "nice": 0.5, "solid": 0.5, "reliable": 0.5, "sturdy": 0.5,
    "pleasant": 0.5, "quiet": 0.5,
}  # fmt: skip
NEGATIVE_ADJECTIVES = {
    "terrible": -1.0, "awful": -1.0, "horrible": -1.0, "useless": -1.0, "broken": -1.0,
    "bad": -0.5, "poor": -0.5, "flimsy": -0.5, "slow": -0.5, "noisy": -0.5,
    "dull": -0.5, "weak": -0.5,
}  # fmt: skip
NEUTRAL_ADJECTIVES = {
    "black": 0.0, "white": 0.0, "small": 0.0, "large": 0.0, "heavy": 0.0, "plain": 0.0,
    "standard": 0.0, "square": 0.0, "round": 0.0, "ordinary": 0.0, "typical": 0.0, "simple": 0.0,
}  # fmt: skip
VERBS = {"love": 1.0, "like": 0.5, "hate": -1.0, "dislike": -0.5, "used": 0.0, "noticed": 0.0}
LEXICON: dict[str, float] = {
    **POSITIVE_ADJECTIVES,
    **NEGATIVE_ADJECTIVES,
    **NEUTRAL_ADJECTIVES,
    **VERBS,
}
SENTIMENTS = ("positive", "negative", "neutral", "mixed")
# Every word the grammar can write; a response's other words are garbled text.
_FUNCTION_WORDS = (
    "the",
    "is",
    "and",
    "but",
    "i",
    "it",
    "feels",
    "overall",
    "a",
    "to",
    "be",
    "honest",
)
GRAMMAR_WORDS = frozenset((*PRODUCTS, *ASPECTS, *LEXICON, *_FUNCTION_WORDS))

_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    """Lower-cased words of a text (letters and apostrophes)."""
    return _WORD.findall(text.lower())


def sentiment(text: str) -> float:
    """Mean valence of the lexicon words in `text`, in [-1, 1]; 0 when it has none (its tone)."""
    hits = [LEXICON[w] for w in words(text) if w in LEXICON]
    return sum(hits) / len(hits) if hits else 0.0


# Topics a useful review covers: two aspects and a verdict on the product itself.
TOPICS_WANTED = 3
_ASPECT_SET = frozenset(ASPECTS)
_PRODUCT_SET = frozenset(PRODUCTS)
_SENTENCE = re.compile(r"[^.!?]+")


def topic_valences(text: str, product: str | None = None) -> dict[str, float] | None:
    """Valence per topic of a review: each aspect mentioned, and "product" for sentences that
    name the product; a topic said twice is averaged, not counted twice. None when the review
    names a product other than `product` (off-topic); with `product` None any product counts."""
    said: dict[str, list[float]] = {}
    for sentence in _SENTENCE.findall(text.lower()):
        ws = words(sentence)
        named = {w for w in ws if w in _PRODUCT_SET}
        if product is not None and named - {product}:
            return None
        hits = [LEXICON[w] for w in ws if w in LEXICON]
        if not hits:
            continue
        topics = [w for w in ws if w in _ASPECT_SET] + (["product"] if named else [])
        for topic in dict.fromkeys(topics):
            said.setdefault(topic, []).append(sum(hits) / len(hits))
    return {topic: sum(v) / len(v) for topic, v in said.items()}


def oracle_reward(text: str, product: str | None = None) -> float:
    """What a reader wants from a review of `product`: the summed valence of the distinct topics
    it covers over TOPICS_WANTED, clipped to [-1, 1]; 0 for an off-topic or topic-free review.

    Without `product` (a text with no prompt) a review naming any product is on topic."""
    valences = topic_valences(text, product)
    if not valences:
        return 0.0
    return max(-1.0, min(1.0, sum(valences.values()) / TOPICS_WANTED))


def prompt_oracle_reward(prompt: str, text: str) -> float:
    """The oracle reward of a response to a task prompt (its product read from the prompt); a
    prompt that names no product of the task scores the text without a product."""
    return oracle_reward(text, product_in(prompt))


# --- prompts and the SFT corpus ----------------------------------------------------------


def prompt_text(product: str, template: int) -> str:
    return PROMPT_TEMPLATES[template].format(product=product)


def all_prompts() -> list[str]:
    """Every prompt of the task (products x templates), in a fixed order."""
    return [prompt_text(p, t) for p in PRODUCTS for t in range(len(PROMPT_TEMPLATES))]


def _bucket(text: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1] from a text (its hash)."""
    return int(hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def held_out_products(fraction: float = 0.2) -> tuple[str, ...]:
    """The products held out of training entirely: round(fraction * 40), chosen by hash."""
    ranked = sorted(PRODUCTS, key=lambda product: _bucket(product, "test-product"))
    return tuple(sorted(ranked[: round(fraction * len(PRODUCTS))]))


@dataclass(frozen=True)
class Split:
    """Training, validation and test prompts; no prompt is in two of them."""

    train: list[str]
    validation: list[str]
    test: list[str]
    test_products: tuple[str, ...]


def split_prompts(
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    test_product_fraction: float = 0.2,
) -> Split:
    """The task's prompts split three ways (see the module docstring); stable across runs."""
    held_products = held_out_products(test_product_fraction)
    train, validation, test = [], [], []
    for prompt in all_prompts():
        if product_of(prompt) in held_products:
            test.append(prompt)
            continue
        bucket = _bucket(prompt, "prompt")
        if bucket < test_fraction:
            test.append(prompt)
        elif bucket < test_fraction + validation_fraction:
            validation.append(prompt)
        else:
            train.append(prompt)
    return Split(train, validation, test, held_products)


def as_messages(prompt: str) -> list[dict]:
    """A prompt as the canonical record's message list (one user turn)."""
    return [{"role": "user", "content": prompt}]


def _adjective(sentiment: str, rng: random.Random) -> str:
    if sentiment == "mixed":
        sentiment = rng.choice(("positive", "negative", "neutral"))
    pool = {
        "positive": POSITIVE_ADJECTIVES,
        "negative": NEGATIVE_ADJECTIVES,
        "neutral": NEUTRAL_ADJECTIVES,
    }[sentiment]
    return rng.choice(sorted(pool))


def _verb(sentiment: str, rng: random.Random) -> str:
    if sentiment == "mixed":
        sentiment = rng.choice(("positive", "negative", "neutral"))
    return rng.choice(
        {
            "positive": ("love", "like"),
            "negative": ("hate", "dislike"),
            "neutral": ("used", "noticed"),
        }[sentiment]
    )


def _sentence(product: str, sentiment: str, rng: random.Random) -> str:
    aspect = rng.choice(ASPECTS)
    kind = rng.randrange(5)
    if kind == 0:
        return f"The {aspect} is {_adjective(sentiment, rng)}."
    if kind == 1:
        joiner = "but" if sentiment == "mixed" else "and"
        return (
            f"The {aspect} is {_adjective(sentiment, rng)} {joiner} {_adjective(sentiment, rng)}."
        )
    if kind == 2:
        return f"I {_verb(sentiment, rng)} the {aspect}."
    if kind == 3:
        return f"It feels {_adjective(sentiment, rng)}."
    return f"Overall, a {_adjective(sentiment, rng)} {product}."


def review(product: str, sentiment: str, rng: random.Random) -> str:
    """One review of `product` in one of SENTIMENTS: one to three sentences of the grammar."""
    return " ".join(_sentence(product, sentiment, rng) for _ in range(rng.randint(1, 3)))


def product_in(prompt: str) -> str | None:
    """The product a prompt asks about, or None when it names none."""
    for product in PRODUCTS:
        if re.search(rf"\b{product}\b", prompt):
            return product
    return None


def product_of(prompt: str) -> str:
    """The product a prompt asks about."""
    product = product_in(prompt)
    if product is None:
        raise ValueError(f"not a prompt of the oracle task: {prompt!r}")
    return product


def sft_records(prompts: Sequence[str], per_prompt: int, seed: int = 0) -> list[dict]:
    """Canonical records for SFT: each prompt with `per_prompt` reviews of uniformly drawn
    sentiment as `chosen` (and another review as `rejected`, which SFT ignores); no scores, the
    oracle rewards in meta."""
    rng = random.Random(f"sft:{seed}")
    records = []
    for prompt in prompts:
        product = product_of(prompt)
        for _ in range(per_prompt):
            chosen = review(product, rng.choice(SENTIMENTS), rng)
            rejected = review(product, rng.choice(SENTIMENTS), rng)
            meta = {
                "task": "oracle-reviews",
                "kind": "sft",
                "oracle_chosen": oracle_reward(chosen, product),
                "oracle_rejected": oracle_reward(rejected, product),
            }
            records.append(canonical_record(prompt, chosen, rejected, None, None, meta))
    return records


def corpus(seed: int = 0, per_prompt: int = 8) -> list[str]:
    """Texts to train the tiny model's tokenizer on: every prompt and a sample of reviews.

    Every product is in it, the held-out ones too: the tokenizer has their words, while no
    prompt or demonstration the policy trains on mentions them."""
    rng = random.Random(f"corpus:{seed}")
    texts = list(all_prompts())
    for product in PRODUCTS:
        texts += [review(product, s, rng) for s in SENTIMENTS for _ in range(per_prompt)]
    return texts


# --- Bradley-Terry labelling ---------------------------------------------------------------


def preference_probability(score_a: float, score_b: float, temperature: float) -> float:
    """P(A preferred to B) under Bradley-Terry with the given temperature (0: noiseless)."""
    if temperature <= 0:
        return 1.0 if score_a > score_b else 0.0 if score_a < score_b else 0.5
    z = (score_a - score_b) / temperature
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def canonical_record(
    prompt: str,
    chosen: str,
    rejected: str,
    score_chosen: float | None,
    score_rejected: float | None,
    meta: dict,
) -> dict:
    """One canonical preference record (DESIGN.md)."""
    from alignment.data.formats import record_id

    messages = as_messages(prompt)
    chosen_m = [{"role": "assistant", "content": chosen}]
    rejected_m = [{"role": "assistant", "content": rejected}]
    return {
        "id": record_id(messages, chosen_m, rejected_m),
        "prompt": messages,
        "chosen": chosen_m,
        "rejected": rejected_m,
        "source": "oracle",
        "row": None,
        "score_chosen": None if score_chosen is None else float(score_chosen),
        "score_rejected": None if score_rejected is None else float(score_rejected),
        "meta": json.dumps(meta, sort_keys=True),
    }


def _gumbel(rng: random.Random) -> float:
    """A standard Gumbel draw: the difference of two is a standard logistic variable."""
    return -math.log(max(rng.expovariate(1.0), 1e-300))


def label_pairs(
    prompts: Sequence[str],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    temperature: float,
    seed: int = 0,
    annotator: Callable[[str, str], float] | None = None,
    oracle: Callable[[str, str], float] | None = None,
    meta_extra: dict | None = None,
) -> list[dict]:
    """Canonical preference records from sampled pairs, labelled by a noisy annotator.

    `annotator(prompt, response)` is what the annotator values and `oracle(prompt, response)`
    the truth kept in meta; both default to the oracle reward. A planted-flaw task
    (`alignment.oracle.flaws`) passes an annotator that also values something the truth does not.

    The annotator perceives r + temperature * Gumbel noise for each response and chooses the
    higher, which is Bradley-Terry with that temperature (a tie at temperature 0 is a coin
    flip). score_chosen/score_rejected are the perceived values, so chosen always scores
    higher; meta keeps the oracle rewards (oracle_chosen, oracle_rejected), the labelling
    probability and whether the label agrees with the noiseless order. Pairs whose two
    responses are identical or empty are skipped.
    """
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise ValueError("prompts, responses_a and responses_b differ in length")
    annotator = annotator or prompt_oracle_reward
    oracle = oracle or prompt_oracle_reward
    rng = random.Random(f"bt:{seed}")
    records = []
    for i, (prompt, a, b) in enumerate(zip(prompts, responses_a, responses_b, strict=True)):
        if not a.strip() or not b.strip() or a == b:
            continue
        value_a, value_b = annotator(prompt, a), annotator(prompt, b)
        seen_a = value_a + temperature * _gumbel(rng)
        seen_b = value_b + temperature * _gumbel(rng)
        a_chosen = seen_a > seen_b or (seen_a == seen_b and rng.random() < 0.5)
        chosen, rejected = (a, b) if a_chosen else (b, a)
        score_a, score_b = oracle(prompt, a), oracle(prompt, b)
        sc, sr = (score_a, score_b) if a_chosen else (score_b, score_a)
        p_a = preference_probability(value_a, value_b, temperature)
        meta = {
            "task": "oracle-reviews",
            "kind": "preference",
            "pair": i,
            "bt_temperature": temperature,
            "oracle_chosen": sc,
            "oracle_rejected": sr,
            "p_chosen": p_a if a_chosen else 1.0 - p_a,
            "agrees_with_oracle": sc > sr if sc != sr else None,
            **(meta_extra or {}),
        }
        seen = (seen_a, seen_b) if a_chosen else (seen_b, seen_a)
        records.append(canonical_record(prompt, chosen, rejected, *seen, meta))
    return records


def oracle_scores(record: dict) -> tuple[float, float]:
    """The noiseless oracle rewards of a record's chosen and rejected response (from meta)."""
    meta = record["meta"]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    return meta["oracle_chosen"], meta["oracle_rejected"]


def label_agreement(records: Sequence[dict]) -> float:
    """Share of records with unequal oracle rewards whose chosen has the higher one."""
    scores = [oracle_scores(r) for r in records]
    decided = [(c, r) for c, r in scores if c != r]
    if not decided:
        return float("nan")
    return sum(c > r for c, r in decided) / len(decided)


# --- text statistics (for spotting degenerate output) -----------------------------------------


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of all texts (word level); 0 when there are none."""
    grams = [tuple(ws[i : i + n]) for ws in map(words, texts) for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str) -> float:
    """Share of a text's word bigrams that already occurred earlier in it."""
    ws = words(text)
    grams = [tuple(ws[i : i + 2]) for i in range(len(ws) - 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def off_grammar_rate(texts: Sequence[str]) -> float:
    """Share of all words that the review grammar never writes (garbled or invented words)."""
    all_words = [w for t in texts for w in words(t)]
    if not all_words:
        return 0.0
    return sum(w not in GRAMMAR_WORDS for w in all_words) / len(all_words)


def text_stats(texts: Sequence[str]) -> dict[str, float]:
    """Length (words), diversity and well-formedness statistics of a set of responses."""
    lengths = [len(words(t)) for t in texts]
    n = max(len(texts), 1)
    return {
        "off_grammar_rate": off_grammar_rate(texts),
        "length_mean": sum(lengths) / n,
        "length_max": float(max(lengths, default=0)),
        "empty_rate": sum(not t.strip() for t in texts) / n,
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "repetition_rate": sum(repetition_rate(t) for t in texts) / n,
        "unique_response_rate": len(set(texts)) / n,
    }
