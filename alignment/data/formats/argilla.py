"""Argilla 2 dataset exports of a ranking question: records whose annotators ranked responses.

Two shapes, both written by the Argilla 2 SDK: the nested one (``records.to_json``,
``to_disk``): ``{"id", "fields": {...}, "metadata", "responses": {question: [{"value",
"user_id"}]}, "suggestions", "vectors"}``; and the flat one (``to_datasets``, ``to_hub``):
fields as columns beside ``<question>.responses``, ``.responses.users``, ``.responses.status``.
A ranking value is the options best first (the SDK's form) or ``[{"value", "rank"}]`` (the
API's, where ranks may tie). Options name the record's fields that hold the responses.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from alignment.data.formats.messages import Parsed, _messages, _text
from alignment.data.formats.ranked import ranked_pairs
from alignment.data.formats.records import ReadOptions, _Malformed

_PROMPT_FIELDS = ("prompt", "instruction", "question", "input")
_FLAT_RECORD_KEYS = ("id", "status", "_server_id")


def is_argilla(obj: dict) -> bool:
    """Whether a row looks like an Argilla 2 record export (nested or flat)."""
    if isinstance(obj.get("fields"), dict) and isinstance(obj.get("responses"), dict):
        return True
    return any(isinstance(k, str) and k.endswith(".responses.users") for k in obj)


def _answers(obj: dict) -> tuple[dict, dict[str, list[tuple[str, str | None, Any]]], dict]:
    """(fields, question -> [(annotator, status, value)], what else the record holds)."""
    if isinstance(obj.get("fields"), dict):
        answers = {
            question: [
                (str(r.get("user_id")), r.get("status"), r.get("value"))
                for r in responses
                if isinstance(r, dict)
            ]
            for question, responses in obj["responses"].items()
            if isinstance(responses, list)
        }
        rest = {k: v for k, v in obj.items() if k not in ("fields", "responses", "vectors")}
        return obj["fields"], answers, rest
    questions = [k[: -len(".responses.users")] for k in obj if k.endswith(".responses.users")]
    answers = {}
    for q in questions:
        values = obj.get(f"{q}.responses") or []
        users = obj.get(f"{q}.responses.users") or []
        statuses = obj.get(f"{q}.responses.status") or [None] * len(values)
        if not (len(values) == len(users) == len(statuses)):
            raise _Malformed(f"wrong_type: {q}.responses, .users and .status differ in length")
        answers[q] = [(str(u), s, v) for v, u, s in zip(values, users, statuses, strict=True)]
    fields = {k: v for k, v in obj.items() if "." not in k and k not in _FLAT_RECORD_KEYS}
    rest = {k: v for k, v in obj.items() if k in _FLAT_RECORD_KEYS or ".suggestion" in k}
    return fields, answers, rest


def _ranks(value: Any, what: str) -> dict[str, float]:
    """Option -> rank (1 is best) of one annotator's ranking."""
    if not isinstance(value, list) or not value:
        raise _Malformed(f"wrong_type: {what} must be a ranking (a list of options)")
    if all(isinstance(v, str) for v in value):
        return {option: float(i + 1) for i, option in enumerate(value)}
    ranks = {}
    for i, v in enumerate(value):
        if not isinstance(v, dict) or not isinstance(v.get("value"), str):
            raise _Malformed(f"wrong_type: {what}[{i}] must be an option or {{value, rank}}")
        rank = v.get("rank", i + 1)
        if isinstance(rank, bool) or not isinstance(rank, int | float):
            raise _Malformed(f"bad_score: {what}[{i}].rank must be a number")
        ranks[v["value"]] = float(rank)
    return ranks


def _ranking_question(answers: dict, opts: ReadOptions) -> str:
    if "ranking" in opts.columns:
        return opts.columns["ranking"]
    ranking = [q for q, given in answers.items() if any(isinstance(v, list) for _, _, v in given)]
    if not ranking:
        raise _Malformed("missing_field: the record has no ranking among its responses")
    if len(ranking) > 1:
        raise _Malformed(
            f"missing_field: {len(ranking)} ranking questions answered "
            f"({', '.join(ranking) or 'none'}); name one with ingest.columns.ranking"
        )
    return ranking[0]


def _parse_argilla(obj: dict, opts: ReadOptions, counts: Counter) -> Parsed:
    """Pairs by the options' mean rank over the annotators who submitted one; annotator ids
    and their rankings are kept in meta for agreement."""
    fields, answers, rest = _answers(obj)
    question = _ranking_question(answers, opts)
    given = [(u, v) for u, status, v in answers.get(question, []) if status in (None, "submitted")]
    if not given:
        raise _Malformed(f"missing_field: no submitted ranking for question {question!r}")
    prompt_field = opts.columns.get("prompt") or next(
        (f for f in _PROMPT_FIELDS if f in fields), None
    )
    if prompt_field is None or fields.get(prompt_field) is None:
        raise _Malformed(
            f"missing_field: no prompt field (looked for {prompt_field or ', '.join(_PROMPT_FIELDS)}"
            "; name it with ingest.columns.prompt)"
        )
    prompt = _messages(fields[prompt_field], f"fields.{prompt_field}", "user", opts, counts)
    rankings = [_ranks(v, f"{question}.responses[{i}]") for i, (_, v) in enumerate(given)]
    options = list(dict.fromkeys(o for r in rankings for o in r))
    mean_rank = {
        o: sum(r[o] for r in rankings if o in r) / sum(o in r for r in rankings) for o in options
    }
    texts = {}
    for o in options:
        if o not in fields:
            raise _Malformed(f"missing_field: ranking option {o!r} names no field of the record")
        texts[o] = _text(fields[o], f"fields.{o}")
    if len(options) < 2:
        raise _Malformed(f"ranked_no_pair: question {question!r} ranks fewer than two options")
    scored = [(-mean_rank[o], i, texts[o]) for i, o in enumerate(options)]
    ordered, ties = ranked_pairs(scored, opts.ranked_pairs)
    if not ordered:
        raise _Malformed("ranked_no_pair: every option has the same mean rank")
    counts["ranked_ties_skipped"] += ties
    used = {prompt_field, *options}
    extra = {k: v for k, v in fields.items() if k not in used}
    argilla = {
        "question": question,
        "annotators": [u for u, _ in given],
        "rankings": rankings,
        "mean_rank": mean_rank,
    }
    out = []
    for a, b in ordered:
        chosen, rejected = options[a[1]], options[b[1]]
        meta = {**rest, **extra, "argilla": {**argilla, "pair": [chosen, rejected]}}
        out.append(
            (
                prompt,
                [{"role": "assistant", "content": a[2]}],
                [{"role": "assistant", "content": b[2]}],
                meta,
            )
        )
    return out
