"""Ranked and scored formats: one prompt, several scored responses, turned into pairs."""

from __future__ import annotations

import math

from alignment.data.formats.messages import _messages, _require, _rest, _score, _text
from alignment.data.formats.records import _Malformed


def _parse_ranked(obj: dict, ranked_pairs: str = "all") -> list[tuple[list, list, list, dict]]:
    """Every ordered pair of strictly different scores ("all"), or best against worst only."""
    _require(obj, "prompt", "responses")
    prompt = _messages(obj["prompt"], "prompt", "user")
    responses = obj["responses"]
    if not isinstance(responses, list) or len(responses) < 2:
        raise _Malformed("wrong_type: responses must be a list of at least two scored responses")
    scored = []
    for i, resp in enumerate(responses):
        if not isinstance(resp, dict):
            raise _Malformed(f"wrong_type: responses[{i}] must be an object with text and score")
        text = next((resp[k] for k in ("text", "response", "content") if k in resp), None)
        text = _text(text, f"responses[{i}].text")
        score = _score(resp.get("score"))
        if not isinstance(score, float) or not math.isfinite(score):
            raise _Malformed(f"bad_score: responses[{i}].score must be a finite number")
        scored.append((score, i, text))
    # stable order: higher score first, then input order
    scored.sort(key=lambda s: (-s[0], s[1]))
    if ranked_pairs == "best_worst":
        ordered = [(scored[0], scored[-1])] if scored[0][0] > scored[-1][0] else []
    else:
        ordered = [(a, b) for n, a in enumerate(scored) for b in scored[n + 1 :] if a[0] > b[0]]
    if not ordered:
        raise _Malformed("ranked_no_pair: all responses share one score")
    rest = _rest(obj, "prompt", "responses")
    return [
        (
            prompt,
            [{"role": "assistant", "content": a[2]}],
            [{"role": "assistant", "content": b[2]}],
            {**rest, "ranked_pair": [a[1], b[1]], "score_chosen": a[0], "score_rejected": b[0]},
        )
        for a, b in ordered
    ]
