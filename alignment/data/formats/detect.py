"""Format detection, column mapping, and the dispatch of a parsed row to its format's parser."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from alignment.data.formats.argilla import _parse_argilla, is_argilla
from alignment.data.formats.messages import (
    _parse_llamafactory,
    _parse_openai,
    _parse_sharegpt,
    _parse_trl,
    _score,
)
from alignment.data.formats.ranked import _parse_ranked
from alignment.data.formats.records import ReadOptions, _Malformed, record_id
from alignment.data.formats.transcripts import _parse_hh

FORMATS = (
    "trl_standard",
    "trl_conversational",
    "hh",
    "sharegpt",
    "ranked",
    "openai_preference",
    "llamafactory_v1",
    "argilla",
    "per_response",
)
# ingest.columns keys renamed onto a row's top level; "score" and "ranking" name keys that the
# ranked and argilla parsers look up themselves
MAPPED_COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "score_chosen",
    "score_rejected",
    "conversations",
    "responses",
    "response",
)
COLUMN_KEYS = (*MAPPED_COLUMNS, "score", "ranking")
# rows looked at to detect the format
_SNIFF_ROWS = 50


def sniff_format(obj: Any) -> str | None:
    """Guess the format of one parsed row, or None when it fits none."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("input"), dict) and "preferred_output" in obj:
        return "openai_preference"
    if "chosen_messages" in obj and "rejected_messages" in obj:
        return "llamafactory_v1"
    if is_argilla(obj):
        return "argilla"
    if "conversations" in obj and "chosen" in obj:
        return "sharegpt"
    if "responses" in obj and "prompt" in obj:
        return "ranked"
    if "prompt" in obj and "response" in obj and "chosen" not in obj and "rejected" not in obj:
        return "per_response"  # one response a row (HelpSteer2): rows of a prompt make pairs
    # UltraFeedback's names; a pair row that carries a completions column stays a pair
    if "completions" in obj and ("prompt" in obj or "instruction" in obj) and "chosen" not in obj:
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


def describe_columns(columns: dict[str, str]) -> str:
    """A column mapping for people, in canonical order: ``prompt <- question, ...``."""
    order = {k: i for i, k in enumerate(COLUMN_KEYS)}
    return ", ".join(
        f"{k} <- {columns[k]}" for k in sorted(columns, key=lambda k: order.get(k, len(order)))
    )


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


def apply_columns(obj: Any, columns: dict[str, str]) -> Any:
    """The row with its mapped columns renamed to the canonical names (``ingest.columns``).

    An Argilla record keeps its fields under ``fields``: they are renamed there.
    """
    renames = {src: dst for dst, src in columns.items() if dst in MAPPED_COLUMNS}
    if not renames or not isinstance(obj, dict):
        return obj
    if isinstance(obj.get("fields"), dict) and isinstance(obj.get("responses"), dict):
        return {**obj, "fields": apply_columns(obj["fields"], columns)}
    missing = [f"{src} (ingest.columns.{dst})" for src, dst in renames.items() if src not in obj]
    if missing:
        raise _Malformed(f"missing_field: {', '.join(missing)}")
    taken = [dst for dst in renames.values() if dst in obj and dst not in renames]
    if taken:
        raise _Malformed(
            f"wrong_type: the row has its own {', '.join(taken)} column and ingest.columns "
            "maps another onto it"
        )
    return {renames.get(k, k): v for k, v in obj.items()}


_PARSERS = {
    "trl_standard": _parse_trl,
    "trl_conversational": _parse_trl,
    "hh": _parse_hh,
    "sharegpt": _parse_sharegpt,
    "ranked": _parse_ranked,
    "openai_preference": _parse_openai,
    "llamafactory_v1": _parse_llamafactory,
    "argilla": _parse_argilla,
}


def _to_records(
    obj: Any, fmt: str, source: str, row: int, opts: ReadOptions, counts: Counter
) -> list[dict]:
    if not isinstance(obj, dict):
        raise _Malformed(f"not_an_object: row is a {type(obj).__name__}, not an object")
    return [
        canonical_record(prompt, chosen, rejected, rest, source, row)
        for prompt, chosen, rejected, rest in _PARSERS[fmt](obj, opts, counts)
    ]


def canonical_record(
    prompt: list, chosen: list, rejected: list, rest: dict, source: str, row: int
) -> dict:
    """The canonical record of one parsed pair; ``rest`` (the row's other keys, scores among
    them) becomes its scores and meta."""
    rest = dict(rest)
    score_c = _score(rest.pop("score_chosen", None))
    score_r = _score(rest.pop("score_rejected", None))
    meta = rest.pop("meta", None)
    if rest:
        meta = {"meta": meta, **rest} if meta is not None else rest
    if meta is not None and not isinstance(meta, str):
        meta = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
    return {
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
