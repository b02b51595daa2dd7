"""Ranked and scored formats: one prompt, several scored responses, turned into pairs.

The ``ranked`` shape is ``{"prompt", "responses": [{"text", "score"}, ...]}``; UltraFeedback's
``{"instruction", "completions": [{"response", "overall_score", "model"}, ...]}`` is the same
shape under other names, and ``ingest.columns.score`` names another rating key.
"""

from __future__ import annotations

import math
from collections import Counter

from alignment.data.formats.messages import Parsed, _messages, _rest, _score, _text
from alignment.data.formats.records import ReadOptions, _Malformed

_PROMPT_KEYS = ("prompt", "instruction")
_RESPONSES_KEYS = ("responses", "completions")
_TEXT_KEYS = ("text", "response", "content")
_SCORE_KEYS = ("score", "rating", "overall_score")

# (score, input position, text)
Scored = tuple[float, int, str]


def ranked_pairs(scored: list[Scored], policy: str) -> tuple[list[tuple[Scored, Scored]], int]:
    """(better, worse) pairs, every pair of different scores ("all") or best against worst,
    and how many pairs of equal score were skipped."""
    # stable order: higher score first, then input order
    scored = sorted(scored, key=lambda s: (-s[0], s[1]))
    if policy == "best_worst":
        if scored[0][0] > scored[-1][0]:
            return [(scored[0], scored[-1])], 0
        return [], 1
    pairs = [(a, b) for n, a in enumerate(scored) for b in scored[n + 1 :] if a[0] > b[0]]
    return pairs, len(scored) * (len(scored) - 1) // 2 - len(pairs)


def _first_key(obj: dict, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if obj.get(k) is not None), None)


def _parse_ranked(obj: dict, opts: ReadOptions, counts: Counter) -> Parsed:
    """Pairs of one prompt's scored responses, by the ``ingest.ranked_pairs`` policy."""
    prompt_key = _first_key(obj, _PROMPT_KEYS)
    responses_key = _first_key(obj, _RESPONSES_KEYS)
    missing = [
        k for k, found in (("prompt", prompt_key), ("responses", responses_key)) if not found
    ]
    if missing:
        raise _Malformed(f"missing_field: {', '.join(missing)}")
    prompt = _messages(obj[prompt_key], prompt_key, "user", opts, counts)
    responses = obj[responses_key]
    if not isinstance(responses, list) or len(responses) < 2:
        raise _Malformed(
            f"wrong_type: {responses_key} must be a list of at least two scored responses"
        )
    score_keys = (opts.columns["score"],) if "score" in opts.columns else _SCORE_KEYS
    scored, models = [], []
    for i, resp in enumerate(responses):
        what = f"{responses_key}[{i}]"
        if not isinstance(resp, dict):
            raise _Malformed(f"wrong_type: {what} must be an object with text and score")
        text = next((resp[k] for k in _TEXT_KEYS if k in resp), None)
        text = _text(text, f"{what}.text")
        key = next((k for k in score_keys if k in resp), score_keys[0])
        score = _score(resp.get(key))
        if not isinstance(score, float) or not math.isfinite(score):
            raise _Malformed(f"bad_score: {what}.{key} must be a finite number")
        scored.append((score, i, text))
        models.append(resp.get("model"))
    ordered, ties = ranked_pairs(scored, opts.ranked_pairs)
    if not ordered:
        raise _Malformed("ranked_no_pair: all responses share one score")
    # a row that gives pairs counts its skipped ties; one that gives none is quarantined
    counts["ranked_ties_skipped"] += ties
    rest = _rest(obj, prompt_key, responses_key)
    out = []
    for a, b in ordered:
        meta = {**rest, "ranked_pair": [a[1], b[1]], "score_chosen": a[0], "score_rejected": b[0]}
        if models[a[1]] is not None or models[b[1]] is not None:
            meta["models"] = [models[a[1]], models[b[1]]]
        out.append(
            (
                prompt,
                [{"role": "assistant", "content": a[2]}],
                [{"role": "assistant", "content": b[2]}],
                meta,
            )
        )
    return out
