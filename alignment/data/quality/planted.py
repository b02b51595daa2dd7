"""Preference pairs with labels flipped on purpose, to measure how well label noise is found.

Two tasks with a known right answer:

- ``word_list_pairs``: chosen drawn from a "good" word list, rejected from a "bad" one; every
  pair is equally easy, so it checks the machinery rather than the method.
- ``oracle_pairs``: two reviews of the oracle task (``alignment.oracle.task``) for the same
  prompt, labelled by the noiseless oracle (the one with the higher oracle reward is chosen;
  pairs the oracle cannot order are left out). Each pair's margin is the oracle reward gap.

``plant_flips`` then swaps chosen and rejected on a share of the pairs, either at random or on
the hardest pairs (the smallest oracle margin), and says which rows it flipped.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from alignment.data.formats import record_id

GOOD = ("clear", "correct", "helpful", "precise", "kind", "accurate", "thorough", "honest",
        "useful", "careful")  # fmt: skip
BAD = ("rude", "vague", "wrong", "lazy", "careless", "misleading", "confusing", "sloppy",
       "dismissive", "false")  # fmt: skip
FlipKind = Literal["random", "hard"]
# hard flips are drawn from this many times `share` of the pairs, the smallest margins first
HARD_POOL = 2


def _record(prompt: str, chosen: str, rejected: str, row: int, source: str) -> dict:
    messages = [{"role": "user", "content": prompt}]
    good = [{"role": "assistant", "content": chosen}]
    bad = [{"role": "assistant", "content": rejected}]
    return {
        "id": record_id(messages, good, bad),
        "prompt": messages,
        "chosen": good,
        "rejected": bad,
        "source": source,
        "row": row,
        "score_chosen": None,
        "score_rejected": None,
        "meta": None,
    }


def word_list_pairs(n: int, seed: int = 0) -> tuple[list[dict], list[float]]:
    """``n`` correctly labelled pairs of the word-list task, and their margins (all 1)."""
    rng = random.Random(f"words:{seed}")
    records = []
    for i in range(n):
        good = " ".join(rng.choice(GOOD) for _ in range(6)) + f" answer {i}"
        bad = " ".join(rng.choice(BAD) for _ in range(6)) + f" answer {i}"
        records.append(_record(f"Question {i}: how do I do task {i}?", good, bad, i, "words"))
    return records, [1.0] * n


def oracle_pairs(n: int, seed: int = 0) -> tuple[list[dict], list[float]]:
    """``n`` pairs of oracle-task reviews labelled by the noiseless oracle, and their margins
    (oracle reward of chosen minus rejected, all > 0). Training prompts only; no two pairs alike."""
    from alignment.oracle import task

    rng = random.Random(f"oracle-pairs:{seed}")
    prompts = task.split_prompts().train
    records: list[dict] = []
    margins: list[float] = []
    seen: set[str] = set()
    while len(records) < n:
        prompt = rng.choice(prompts)
        product = task.product_of(prompt)
        a, b = (task.review(product, rng.choice(task.SENTIMENTS), rng) for _ in range(2))
        ra, rb = task.oracle_reward(a), task.oracle_reward(b)
        if ra == rb:
            continue  # the oracle has no preference: no right label to flip
        chosen, rejected = (a, b) if ra > rb else (b, a)
        rec = _record(prompt, chosen, rejected, len(records), "oracle")
        if rec["id"] in seen:
            continue
        seen.add(rec["id"])
        records.append(rec)
        margins.append(abs(ra - rb))
    return records, margins


def plant_flips(
    records: Sequence[dict], margins: Sequence[float], share: float, kind: FlipKind, seed: int = 0
) -> tuple[list[dict], set[int]]:
    """The records with ``round(share * n)`` labels swapped, and the rows swapped.

    ``random``: rows drawn uniformly. ``hard``: rows drawn uniformly from the
    ``HARD_POOL * share`` of pairs with the smallest margin (ties in margin broken at random),
    the pairs whose label a reward model is least sure of and so the hardest to catch.
    The given records are not changed; flipped ones get a new id, as a relabelled file would.
    """
    if kind not in ("random", "hard"):
        raise ValueError(f"flip kind {kind!r}: expected 'random' or 'hard'")
    rng = random.Random(f"flips:{kind}:{share}:{seed}")
    n = len(records)
    count = round(share * n)
    rows = list(range(n))
    if kind == "hard":
        rng.shuffle(rows)
        rows.sort(key=lambda i: margins[i])  # stable: equal margins stay in random order
        rows = rows[: min(n, max(count, round(HARD_POOL * share * n)))]
    flipped = set(rng.sample(rows, count))
    out = []
    for i, rec in enumerate(records):
        if i in flipped:
            chosen, rejected = rec["rejected"], rec["chosen"]
            rec = {**rec, "chosen": chosen, "rejected": rejected}
            rec["id"] = record_id(rec["prompt"], chosen, rejected)
        out.append(dict(rec))
    return out, flipped


def flag_quality(flagged: set[int], planted: set[int]) -> dict:
    """Precision and recall of flagged rows against the planted ones."""
    hits = len(flagged & planted)
    return {
        "precision": hits / len(flagged) if flagged else None,
        "recall": hits / len(planted) if planted else None,
        "flagged": len(flagged),
        "planted": len(planted),
    }
