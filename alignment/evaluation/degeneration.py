"""Degeneration of a policy's samples: does it still say different things, in more than a word?

A policy that games its reward often collapses to a few templates ("Excellent.") that the proxy
scores as perfect. These figures read only the policy's own responses (no model, no judge), so
nothing the policy was trained against can inflate them:

- ``unique_response_rate``: distinct responses / responses, after lower-casing and collapsing
  whitespace (1.0: every answer differs; 1/n: one answer for every prompt);
- ``distinct_2``: distinct word bigrams / all word bigrams, pooled over every response
  (Li et al. 2016's distinct-2); 0.0 when no response has two words;
- ``response_words_mean``: mean words per response.

Words are runs of letters, digits, underscores and apostrophes, lower-cased.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

METRICS = ("unique_response_rate", "distinct_2", "response_words_mean")
_WORD = re.compile(r"[\w']+")


def words(text: str) -> list[str]:
    """The lower-cased words of `text`."""
    return _WORD.findall(text.lower())


def normalise(response: str) -> str:
    """The form two responses are compared in: lower case, whitespace collapsed."""
    return " ".join(response.lower().split())


def unique_response_rate(responses: Sequence[str]) -> float:
    """Distinct (normalised) responses over responses."""
    _nonempty(responses)
    return len({normalise(r) for r in responses}) / len(responses)


def distinct_n(responses: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams over all word n-grams, pooled over responses (0.0 when none)."""
    _nonempty(responses)
    grams: list[tuple[str, ...]] = []
    for response in responses:
        tokens = words(response)
        grams += [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def response_words_mean(responses: Sequence[str]) -> float:
    """Mean number of words per response."""
    _nonempty(responses)
    return float(np.mean([len(words(r)) for r in responses]))


def degeneration_metrics(responses: Sequence[str], suffix: str = "") -> dict[str, float]:
    """The three figures under their metric names (with `suffix`, e.g. ``_champion``)."""
    return {
        f"unique_response_rate{suffix}": unique_response_rate(responses),
        f"distinct_2{suffix}": distinct_n(responses, 2),
        f"response_words_mean{suffix}": response_words_mean(responses),
    }


def most_repeated(responses: Sequence[str], k: int = 3) -> list[dict]:
    """The `k` most frequent responses (compared normalised, shown as first written) with their
    counts: a refusal's evidence."""
    counts = Counter(normalise(r) for r in responses)
    first: dict[str, str] = {}
    for r in responses:
        first.setdefault(normalise(r), r)
    return [{"response": first[text], "count": count} for text, count in counts.most_common(k)]


def _nonempty(responses: Sequence[str]) -> None:
    if len(responses) == 0:
        raise ValueError("no responses to measure degeneration on")
