"""Repeated judgements of one pair aggregated into one pair with a soft label.

An item is a prompt and two responses, in either order; each row holding it is a judgement of
which response is better. Every judgement counts, as in the agreement report, also a row that a
rule quarantines (an exact repeat is a ``duplicate``): it is still somebody's judgement. An item
judged both ways has its accepted rows (at most one per order, since an exact repeat is a
duplicate) made one pair, oriented toward the response most judgements preferred (an item every
judgement agrees on keeps its row as it is):

- ``soft``: ``score_chosen`` = p, the share of judgements that prefer the chosen response, and
  ``score_rejected`` = 1 - p: the preference probability the soft-label DPO and reward-model
  losses read (``methods/soft_labels.py``);
- ``majority``: the same orientation, scores left as they were (a hard label); a tie keeps the
  first accepted row's order and is counted;
- ``keep``: rows left as they are.

The kept row's meta says how it was made (``repeats``: judgements, how many prefer the chosen
response, the annotators, the ids of the accepted rows merged into it, the scores it had).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alignment.data.formats import concat_strings, messages_json, record_id, sha256_digests


def item_keys(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit key of each row's item, whether its chosen response is the item's first)."""
    prompt = messages_json(table.column("prompt"))
    chosen = messages_json(table.column("chosen"))
    rejected = messages_json(table.column("rejected"))
    chosen_first = pc.less_equal(chosen, rejected)
    first = pc.if_else(chosen_first, chosen, rejected)
    second = pc.if_else(chosen_first, rejected, chosen)
    large = pa.large_string()
    text = concat_strings(prompt.cast(large), "\x00", first.cast(large), "\x00", second.cast(large))
    digests = sha256_digests(text)
    keys = np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)
    return keys, chosen_first.to_numpy(zero_copy_only=False).astype(bool)


def _annotator(meta: str | None) -> str | None:
    if not meta or "annotator" not in meta:
        return None
    try:
        value = json.loads(meta)
    except ValueError:
        return None
    for node in (value, value.get("meta") if isinstance(value, dict) else None):
        if isinstance(node, dict) and node.get("annotator") not in (None, ""):
            return str(node["annotator"])
    return None


class RepeatedJudgements:
    """Collects every judgement and the accepted rows' items; ``aggregate`` merges them."""

    def __init__(self, mode: str):
        self.mode = mode
        self._keys: list[np.ndarray] = []
        self._first: list[np.ndarray] = []
        self._annotators: list[tuple[int, str]] = []
        self._accepted: list[np.ndarray] = []
        self._last: tuple = ((), np.zeros(0, np.uint64))

    def add_judgements(self, records: pa.Table) -> None:
        """Every parsed record of the input, before any rule."""
        if self.mode == "keep" or not records.num_rows:
            return
        keys, first = item_keys(records)
        self._last = (records.column("id"), keys)
        self._keys.append(keys)
        self._first.append(first)
        meta = records.column("meta")
        has = pc.fill_null(pc.match_substring(meta, "annotator"), False).to_numpy(
            zero_copy_only=False
        )
        for i in np.flatnonzero(has).tolist():
            who = _annotator(meta[i].as_py())
            if who is not None:
                self._annotators.append((int(keys[i]), who))

    def add_accepted(self, accepted: pa.Table) -> None:
        """The items of the accepted rows of the records last given to ``add_judgements``
        (their keys are taken from there: an id is one item, so nothing is hashed again)."""
        if self.mode == "keep" or not accepted.num_rows:
            return
        ids, keys = self._last
        mask = pc.is_in(ids, value_set=accepted.column("id").combine_chunks())
        self._accepted.append(keys[mask.to_numpy(zero_copy_only=False)])

    def _items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item keys judged more than once, their judgements, how many prefer the first)."""
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0, np.uint64)
        first = np.concatenate(self._first) if self._first else np.zeros(0, bool)
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        for_first = np.bincount(inverse, weights=first, minlength=len(uniq)).astype(np.int64)
        several = counts > 1
        return uniq[several], counts[several], for_first[several]

    def conflicts(self) -> bool:
        """Whether an accepted row's item was judged both ways (then ``aggregate`` must run)."""
        if self.mode == "keep" or not self._accepted:
            return False
        keys, counts, for_first = self._items()
        both = keys[(for_first > 0) & (for_first < counts)]
        return bool(np.isin(np.concatenate(self._accepted), both).any())

    def summary(self) -> dict | None:
        """Items with an accepted row judged more than once (before any merge), or None."""
        if self.mode == "keep" or not self._accepted:
            return None
        keys, counts, _ = self._items()
        seen = np.isin(keys, np.concatenate(self._accepted))
        if not seen.any():
            return None
        return {
            "mode": self.mode,
            "groups": int(seen.sum()),
            "merged": 0,
            "conflicting": 0,
            "tied": 0,
            "judgements": int(counts[seen].sum()),
        }

    def aggregate(self, table: pa.Table) -> tuple[pa.Table, dict]:
        """The accepted rows with each item judged both ways as one pair, and what was done.
        An item every judgement agrees on keeps its row as it is (its label is already hard)."""
        keys, counts, for_first = self._items()
        votes = {
            k: (c, f)
            for k, c, f in zip(keys.tolist(), counts.tolist(), for_first.tolist(), strict=True)
            if 0 < f < c
        }
        people: dict[int, list[str]] = {}
        for k, who in self._annotators:
            if k in votes and who not in people.setdefault(k, []):
                people[k].append(who)
        acc_keys, acc_first = item_keys(table)
        rows = table.to_pylist()
        keep = np.ones(len(rows), dtype=bool)
        kept: dict[int, tuple[int, dict]] = {}  # key -> (row kept, its repeats record)
        stats = self.summary()
        for i, k in enumerate(acc_keys.tolist()):
            if k not in votes:
                continue
            if k in kept:
                keep[i] = False
                stats["merged"] += 1
                kept[k][1]["merged_ids"].append(rows[i]["id"])
                continue
            total, first_votes = votes[k]
            stats["conflicting"] += 1
            stats["tied"] += 2 * first_votes == total
            rows[i], repeats = self._merged(rows[i], bool(acc_first[i]), total, first_votes)
            if people.get(k):
                repeats["annotators"] = people[k]
            kept[k] = (i, repeats)
        for i, repeats in kept.values():
            rows[i]["meta"] = _with_repeats(rows[i]["meta"], repeats)
        out = pa.Table.from_pylist(
            [r for r, k in zip(rows, keep, strict=True) if k], schema=table.schema
        )
        return out, stats

    def _merged(self, row: dict, chosen_first: bool, total: int, for_first: int):
        """The kept row of an item, turned toward the majority, and its repeats record."""
        agree = for_first if chosen_first else total - for_first  # preferring its chosen
        row = dict(row)
        repeats = {
            "judgements": total,
            "merged_ids": [],
            "scores": [row["score_chosen"], row["score_rejected"]],
        }
        if 2 * agree < total:  # most judgements prefer the other response: turn the pair
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            agree = total - agree
            repeats["turned"] = True
        repeats["preferring_chosen"] = agree
        row["id"] = record_id(row["prompt"], row["chosen"], row["rejected"])
        if self.mode == "soft":
            p = agree / total
            row["score_chosen"], row["score_rejected"] = p, 1 - p
        return row, repeats


def _with_repeats(before: str | None, repeats: dict) -> str:
    meta: dict = {"repeats": repeats}
    if before is not None:
        try:
            parsed = json.loads(before)
        except ValueError:
            parsed = before
        meta = {**parsed, **meta} if isinstance(parsed, dict) else {"meta": parsed, **meta}
    return json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
