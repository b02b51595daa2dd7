"""Format detection, and the dispatch of a parsed row to its format's parser."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from alignment.data.formats.messages import _parse_sharegpt, _parse_trl, _score
from alignment.data.formats.ranked import _parse_ranked
from alignment.data.formats.records import _Malformed, record_id
from alignment.data.formats.transcripts import _parse_hh

FORMATS = ("trl_standard", "trl_conversational", "hh", "sharegpt", "ranked")
# rows looked at to detect the format
_SNIFF_ROWS = 50


def sniff_format(obj: Any) -> str | None:
    """Guess the format of one parsed row, or None when it fits none."""
    if not isinstance(obj, dict):
        return None
    if "conversations" in obj and "chosen" in obj:
        return "sharegpt"
    if "responses" in obj and "prompt" in obj:
        return "ranked"
    if "chosen" not in obj or "rejected" not in obj:
        return None
    chosen = obj["chosen"]
    if "prompt" not in obj:
        if isinstance(chosen, str) and "Human:" in chosen and "Assistant:" in chosen:
            return "hh"
        if isinstance(chosen, list):
            return "trl_conversational"  # implicit prompt: the shared prefix
        return None
    if isinstance(chosen, list) or isinstance(obj["prompt"], list):
        return "trl_conversational"
    if isinstance(chosen, str):
        return "trl_standard"
    return None


def _detect(rows: list[tuple[int, Any, str]]) -> str | None:
    votes = Counter()
    for _, obj, _ in rows:
        fmt = sniff_format(obj)
        if fmt:
            votes[fmt] += 1
        if sum(votes.values()) >= _SNIFF_ROWS:
            break
    if not votes:
        return None
    # most votes; ties go to the format seen first (Counter keeps insertion order)
    return votes.most_common(1)[0][0]


_PARSERS = {
    "trl_standard": _parse_trl,
    "trl_conversational": _parse_trl,
    "hh": _parse_hh,
    "sharegpt": _parse_sharegpt,
    "ranked": _parse_ranked,
}


def _to_records(obj: Any, fmt: str, source: str, row: int, ranked_pairs: str = "all") -> list[dict]:
    if not isinstance(obj, dict):
        raise _Malformed(f"not_an_object: row is a {type(obj).__name__}, not an object")
    records = []
    parsed = _parse_ranked(obj, ranked_pairs) if fmt == "ranked" else _PARSERS[fmt](obj)
    for prompt, chosen, rejected, rest in parsed:
        rest = dict(rest)
        score_c = _score(rest.pop("score_chosen", None))
        score_r = _score(rest.pop("score_rejected", None))
        meta = rest.pop("meta", None)
        if rest:
            meta = {"meta": meta, **rest} if meta is not None else rest
        if meta is not None and not isinstance(meta, str):
            meta = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
        records.append(
            {
                "id": record_id(prompt, chosen, rejected),
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "source": source,
                "row": row,
                "score_chosen": score_c,
                "score_rejected": score_r,
                "meta": meta,
            }
        )
    return records
