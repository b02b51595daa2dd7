"""One row per response, as HelpSteer2 ships it: rows that share a prompt make the pairs.

A row is ``{"prompt", "response", "helpfulness", "correctness", "coherence", "complexity",
"verbosity"}``. Rows are grouped by prompt over the whole file (a file of this layout is held in
memory while it is read); each group's responses are ranked by ``ingest.response_score`` (one
attribute, or a weighted sum of several) and paired by the ``ingest.ranked_pairs`` policy.

Every input row ends in exactly one place: in one or more pairs (each pair keeps both source
rows in ``meta.rows``, and the chunk maps each row to the ids of its pairs), or in the
quarantine with its reason: ``unpaired_response`` (the only response to its prompt),
``tied_scores`` (it ties every other response to its prompt), ``unused_by_policy``
(``best_worst`` pairs only the ends), or why it could not be read (``bad_score``, ...).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

from alignment.data.formats.detect import canonical_record
from alignment.data.formats.messages import _messages, _rest, _score
from alignment.data.formats.ranked import ranked_pairs
from alignment.data.formats.records import Chunk, FileInfo, ReadOptions, _clip, _Malformed

ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def _weights(opts: ReadOptions) -> dict[str, float]:
    score = opts.response_score
    return {score: 1.0} if isinstance(score, str) else dict(score)


def _row_score(obj: dict, weights: dict[str, float]) -> float:
    """The response's ranking score: one attribute, or the weighted sum of several."""
    total = 0.0
    for key, weight in weights.items():
        value = _score(obj.get(key))
        if not isinstance(value, float) or not math.isfinite(value):
            got = "missing" if obj.get(key) is None else repr(obj.get(key))
            raise _Malformed(f"bad_score: {key} must be a finite number, got {got}")
        total += weight * value
    return total


def _describe_score(weights: dict[str, float]) -> str:
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        return next(iter(weights))
    return " + ".join(f"{w:g}*{k}" for k, w in weights.items())


def per_response_chunks(
    rows: Iterator[tuple[int, Any, str]],
    source: str,
    info: FileInfo,
    opts: ReadOptions,
    chunk_rows: int,
) -> Iterator[Chunk]:
    """Pairs of a per-response file, whole prompt groups at a time, about ``chunk_rows`` input
    rows a chunk; ``Chunk.pair_rows`` says which pairs each input row went into."""
    weights = _weights(opts)
    counts = info.counts
    malformed: list[dict] = []
    # prompt (canonical JSON) -> [(line, score, prompt, response text, row object, raw)]
    groups: dict[str, list[tuple]] = {}
    for lineno, obj, raw in rows:
        info.rows_read += 1
        try:
            if isinstance(obj, _Malformed):
                raise obj
            if not isinstance(obj, dict):
                raise _Malformed(f"not_an_object: row is a {type(obj).__name__}, not an object")
            missing = [k for k in ("prompt", "response") if obj.get(k) is None]
            if missing:
                raise _Malformed(f"missing_field: {', '.join(missing)}")
            prompt = _messages(obj["prompt"], "prompt", "user", opts, counts)
            response = _messages(obj["response"], "response", "assistant", opts, counts)
            score = _row_score(obj, weights)
        except _Malformed as exc:
            malformed.append(_quarantined(source, lineno, raw, str(exc)))
            continue
        key = json.dumps(prompt, ensure_ascii=False, sort_keys=True)
        groups.setdefault(key, []).append((lineno, score, prompt, response, obj, raw))
    chunk = Chunk([], malformed, len(malformed), source, pair_rows={})
    for members in groups.values():
        _pair_group(members, chunk, source, opts, counts, _describe_score(weights))
        if chunk.rows >= chunk_rows:
            yield chunk
            chunk = Chunk([], [], 0, source, pair_rows={})
    if chunk.rows:
        yield chunk


def _pair_group(
    members: list[tuple],
    chunk: Chunk,
    source: str,
    opts: ReadOptions,
    counts: Counter,
    score_name: str,
) -> None:
    """Add one prompt's pairs to the chunk, and quarantine its rows that are in none."""
    chunk.rows += len(members)
    if len(members) == 1:
        line, _, _, _, _, raw = members[0]
        counts["per_response_unpaired"] += 1
        chunk.malformed.append(
            _quarantined(
                source, line, raw, "unpaired_response: the only response to its prompt in the file"
            )
        )
        return
    # response content stands in for the text: a response may be a list of messages
    scored = [(m[1], i, "") for i, m in enumerate(members)]
    pairs, ties = ranked_pairs(scored, opts.ranked_pairs)
    counts["ranked_ties_skipped"] += ties
    used: set[int] = set()
    for a, b in pairs:
        ca, cb = members[a[1]], members[b[1]]
        meta = {
            "rows": [ca[0], cb[0]],
            "score": score_name,
            "attributes_chosen": {k: ca[4][k] for k in ATTRIBUTES if k in ca[4]},
            "attributes_rejected": {k: cb[4][k] for k in ATTRIBUTES if k in cb[4]},
        }
        extra = _rest(ca[4], "prompt", "response", *ATTRIBUTES)
        if extra:
            meta["extra"] = extra
        meta["score_chosen"], meta["score_rejected"] = ca[1], cb[1]
        record = canonical_record(ca[2], ca[3], cb[3], meta, source, ca[0])
        chunk.records.append(record)
        for line in (ca[0], cb[0]):
            chunk.pair_rows.setdefault(line, []).append(record["id"])
        used.update((a[1], b[1]))
    for i, (line, score, _, _, _, raw) in enumerate(members):
        if i in used:
            continue
        if not pairs or all(m[1] == score for m in members):
            reason = f"tied_scores: every response to its prompt has {score_name} {score:g}"
            counts["per_response_tied_rows"] += 1
        else:
            reason = (
                f"unused_by_policy: ingest.ranked_pairs={opts.ranked_pairs} pairs only the best "
                "and the worst response to a prompt"
            )
            counts["per_response_unused_rows"] += 1
        chunk.malformed.append(_quarantined(source, line, raw, reason))


def _quarantined(source: str, line: int, raw: str, reason: str) -> dict:
    return {"source": source, "row": line, "raw": _clip(raw), "reasons": [reason]}
