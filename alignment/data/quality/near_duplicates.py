"""Near-duplicate prompts and pairs by MinHash (``rensa``) and banded LSH, across chunks and versions.

Texts are normalized as ``splits.normalized_prompt`` does and cut into word shingles; each
prompt (once per exact spelling) and each pair (prompt, chosen and rejected) gets a MinHash
signature. LSH bands propose candidates among everything seen before (earlier versions first,
then earlier rows of this input); a candidate counts only when the signatures' estimated
Jaccard similarity reaches the threshold. The first of a group is its representative: a later
member is quarantined (``keep_one``) or kept and flagged (``flag``), and either way named with
the id of the row it repeats. A kept member's rows take the split side of the representative's
prompt (``split_buckets``), so a whole group lands on one side of train/eval.

The similarity check keeps 8 bits of each MinHash value (b-bit MinHash, corrected for chance
matches), which keeps memory near ``num_perm`` bytes per row. An ingest has large inputs signed
ahead by worker processes (``signing``); the check takes those signatures by record id.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from alignment.data.formats import messages_json, sha256_digests
from alignment.data.quality import minhash
from alignment.data.quality.minhash import (
    _MIX,
    PairText,
    _finalize,
    _joined_words,
    _minhash,
    _shingles,
    signatures,
    word_hashes,
)
from alignment.data.quality.minhash import shingle_hashes as shingle_hashes  # re-exported
from alignment.data.splits import digest_buckets
from alignment.quality_config import NearDuplicateConfig

RULES = {
    "near_duplicate_prompt": "the prompt nearly repeats an earlier prompt (MinHash over word "
    "shingles, quality.near_duplicates.prompt_threshold); quarantined under keep_one",
    "near_duplicate_pair": "prompt, chosen and rejected nearly repeat an earlier pair "
    "(quality.near_duplicates.pair_threshold); quarantined under keep_one",
}


def sign_records(pairs: PairText, indexes: dict, cfg: NearDuplicateConfig) -> dict[str, Units]:
    """The units of records' prompts and pairs under ``indexes`` (by kind), each prompt's words
    taken once for both: what ``_Index.units`` gives for the prompts and the ``PairText``."""
    n, words = len(pairs), cfg.shingle_words
    if not n:
        texts = {"prompt": pairs.prompt, "pair": pairs}
        return {kind: index.units(texts[kind], cfg) for kind, index in indexes.items()}
    parts = []
    for start in range(0, n, minhash._SIGN_ROWS):
        piece = pairs.slice(start, min(minhash._SIGN_ROWS, n - start))
        prompt = word_hashes(piece.prompt)
        units = {}
        if "prompt" in indexes:
            units["prompt"] = indexes["prompt"].signed(*_minhash(*_shingles(*prompt, words), cfg))
        if "pair" in indexes:
            joined = _joined_words([prompt, word_hashes(piece.chosen), word_hashes(piece.rejected)])
            units["pair"] = indexes["pair"].signed(*_minhash(*_shingles(*joined, words), cfg))
        parts.append(units)
    return {
        kind: Units(
            np.concatenate([p[kind].sig8 for p in parts]),
            np.concatenate([p[kind].bands for p in parts]),
            np.concatenate([p[kind].has_text for p in parts]),
        )
        if len(parts) != 1
        else parts[0][kind]
        for kind in indexes
    }


def lsh_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows per band): the fewest false candidates that still propose at least 99% of
    pairs whose similarity is at the threshold."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= 0.99:
            best = (bands, rows)
    return best


@dataclass
class Units:
    """Texts as the check uses them: 8-bit MinHash values, LSH band hashes, whether any shingle."""

    sig8: np.ndarray  # (n, num_perm) uint8
    bands: np.ndarray  # (n, bands) uint64
    has_text: np.ndarray  # (n,) bool


@dataclass
class _Index:
    """Signatures (8 bits a value) and LSH bands of every unit seen, by key 0, 1, 2, ..."""

    threshold: float
    bands: int
    rows: int
    sigs: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (first key, values)
    size: int = 0
    band_values: list[np.ndarray] = field(default_factory=list)  # sorted, one array a band
    band_keys: list[np.ndarray] = field(default_factory=list)

    def band_hashes(self, sig: np.ndarray) -> np.ndarray:
        """(n, bands) uint64: each band's values combined into one hash."""
        out = np.zeros((len(sig), self.bands), dtype=np.uint64)
        for b in range(self.bands):
            x = np.full(len(sig), np.uint64(b + 1), dtype=np.uint64)
            for j in range(self.rows):
                x = _finalize(x * _MIX + sig[:, b * self.rows + j].astype(np.uint64))
            out[:, b] = x
        return out

    def units(self, text, cfg: NearDuplicateConfig) -> Units:
        """Sign texts (strings or a ``PairText``): their 8-bit values and this index's band
        hashes."""
        return self.signed(*signatures(text, cfg))

    def signed(self, sig: np.ndarray, has_text: np.ndarray) -> Units:
        """Units of these signatures."""
        return Units((sig & 0xFF).astype(np.uint8), self.band_hashes(sig), has_text)

    def signature(self, key: int) -> np.ndarray:
        for first, values in self.sigs:
            if key < first + len(values):
                return values[key - first]
        raise KeyError(key)

    def earlier_candidates(self, bands: np.ndarray) -> dict[int, set[int]]:
        """For each row that has any, the indexed keys that share one of its bands."""
        found: dict[int, set[int]] = {}
        for b, (values, keys) in enumerate(zip(self.band_values, self.band_keys, strict=True)):
            if not len(values):
                continue
            at = np.minimum(np.searchsorted(values, bands[:, b]), len(values) - 1)
            hit = np.flatnonzero(values[at] == bands[:, b])
            for i, key in zip(hit.tolist(), keys[at[hit]].tolist(), strict=True):
                found.setdefault(i, set()).add(key)
        return found

    def add(self, sig8: np.ndarray, bands: np.ndarray, indexed: np.ndarray) -> None:
        """Give the new units the next keys; put the ``indexed`` ones in the bands (the
        earliest key stays the one found for a band value)."""
        keys = np.arange(self.size, self.size + len(sig8), dtype=np.int64)[indexed]
        self.sigs.append((self.size, sig8))
        self.size += len(sig8)
        new = np.ascontiguousarray(bands[indexed].T)  # a band's values side by side
        for b in range(self.bands):
            values, keys_b = _first_keys(new[b], keys)
            if b == len(self.band_values):
                self.band_values.append(values)
                self.band_keys.append(keys_b)
                continue
            old_values = self.band_values[b]
            if len(old_values):  # a value already indexed keeps its earlier key
                at = np.minimum(np.searchsorted(old_values, values), len(old_values) - 1)
                fresh = old_values[at] != values
                values, keys_b = values[fresh], keys_b[fresh]
            # sorted, distinct from the indexed ones: each goes in at its place, no sort
            at = np.searchsorted(old_values, values)
            self.band_values[b] = np.insert(old_values, at, values)
            self.band_keys[b] = np.insert(self.band_keys[b], at, keys_b)


def _first_keys(values: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values, sorted, each with its smallest key (``keys`` ascend: the first)."""
    if not len(values):
        return values.copy(), keys.copy()
    order = np.argsort(values)  # not stable (faster): the smallest key is taken below
    values, keys = values[order], keys[order]
    start = np.ones(len(values), dtype=bool)
    start[1:] = values[1:] != values[:-1]
    at = np.flatnonzero(start)
    return values[at], np.minimum.reduceat(keys, at)


def _shared(values: np.ndarray) -> np.ndarray:
    """Whether each value occurs more than once."""
    order = np.argsort(values)
    same = values[order][1:] == values[order][:-1]
    out = np.zeros(len(values), dtype=bool)
    out[order[1:][same]] = True
    out[order[:-1][same]] = True
    return out


class _TableRows:
    """Rows of a records table; their texts are signed when the check asks for them (or taken
    from ``presigned``, signed ahead)."""

    def __init__(self, table: pa.Table, cfg: NearDuplicateConfig, presigned=None):
        self.table, self.cfg, self.presigned = table, cfg, presigned
        self.ids = table.column("id").to_pylist()
        digests = sha256_digests(messages_json(table.column("prompt")))
        exact = np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)
        self.exact, self.buckets = exact, digest_buckets(digests)

    @functools.cached_property
    def prompt_text(self) -> pa.Array:
        return _joined(self.table.column("prompt"))

    def _units(self, kind: str, index: _Index, rows: list[int], text) -> Units:
        if self.presigned is not None:
            found = self.presigned.units(kind, [self.ids[i] for i in rows])
            if found is not None:
                return found
        return index.units(text().take(pa.array(rows, pa.int64())), self.cfg)

    def prompt_units(self, index: _Index, rows: list[int]) -> Units:
        return self._units("prompt", index, rows, lambda: self.prompt_text)

    def pair_units(self, index: _Index, rows: list[int]) -> Units:
        return self._units("pair", index, rows, lambda: pair_texts(self.table, self.prompt_text))


def pair_texts(table: pa.Table, prompt_text: pa.Array) -> PairText:
    """What the pair check signs: prompt, chosen and rejected (``PairText``)."""
    return PairText(prompt_text, _joined(table.column("chosen")), _joined(table.column("rejected")))


def _similarities(a: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Jaccard estimates of ``a`` and each row of ``others`` from 8-bit MinHash values, chance
    matches (1 in 256) taken out."""
    match = np.count_nonzero(others == a, axis=1) / a.shape[-1]
    return np.maximum(0.0, (match - 1 / 256) / (1 - 1 / 256))


@dataclass
class _Match:
    key: int
    similarity: float


class NearDuplicates:
    """Stateful near-duplicate check: ``add_earlier`` for earlier versions, then ``check``."""

    def __init__(self, cfg: NearDuplicateConfig):
        self.cfg = cfg
        self.indexes: dict[str, _Index] = {}
        for kind, threshold in (("prompt", cfg.prompt_threshold), ("pair", cfg.pair_threshold)):
            if threshold is not None:
                bands, rows = lsh_bands(cfg.num_perm, threshold)
                self.indexes[kind] = _Index(threshold, bands, rows)
        # exact prompt hashes seen (sorted) and their prompt keys
        self._prompt_hashes = np.zeros(0, dtype=np.uint64)
        self._prompt_keys = np.zeros(0, dtype=np.int64)
        self.prompt_parent: list[int] = []  # prompt key -> the prompt whose group it joined
        self.prompt_row_id: list[str] = []  # prompt key -> id of the first row with it
        self.prompt_bucket: list[float] = []
        self.prompt_match: dict[int, _Match] = {}  # prompt key -> the earlier prompt it repeats
        self.prompt_dropped: set[int] = set()
        self.pair_id: list[str] = []  # pair key -> record id
        self.pair_prompt: list[int] = []  # pair key -> prompt key
        self.pair_parent: dict[int, int] = {}
        self.earlier_ids: set[str] = set()
        self.groups: dict[tuple[str, str], list[dict]] = {}
        self.split_buckets: dict[str, float] = {}
        self.counts = {"quarantined": 0, "flagged": 0, "split_conflicts": 0, "earlier_rows": 0}
        # the signatures of this input's rows, kept for its signature index (``keep_signatures``)
        self.kept = None
        self.presigner = None  # signing ahead in worker processes (``presign``)

    def presign(self, table: pa.Table, min_rows: int | None = None) -> None:
        """Start signing records that ``check`` will be given, in worker processes (a table
        under ``signing.MIN_ROWS`` rows is left to the check)."""
        from alignment.data.quality.signing import MIN_ROWS, Presigner

        if self.presigner is None:
            self.presigner = Presigner(self.cfg, self.indexes)
        self.presigner.submit(table, MIN_ROWS if min_rows is None else min_rows)

    def close(self) -> None:
        """Stop the signing threads, if any."""
        if self.presigner is not None:
            self.presigner.close()
            self.presigner = None

    def add_earlier(self, table: pa.Table) -> None:
        """Index an earlier version: its accepted rows, or its signature index
        (``signature_index``), which gives the same state without signing the texts again."""
        ids = table.column("id").to_pylist()
        fresh = np.array([i not in self.earlier_ids for i in ids], dtype=bool)
        self.earlier_ids.update(ids)
        if fresh.any():
            table = table.filter(pa.array(fresh))
            if "prompt_sig8" in table.column_names:
                from alignment.data.quality.signature_index import SignedRows

                rows = SignedRows(table, self.cfg, self.indexes)
            else:
                rows = _TableRows(table, self.cfg)
            self._run(rows, record=False)
            self.counts["earlier_rows"] += int(fresh.sum())

    def check(self, table: pa.Table) -> dict[int, list[str]]:
        """Reasons to quarantine, by row position of ``table``; flagged rows are recorded."""
        try:
            if not table.num_rows:
                return {}
            return self._run(_TableRows(table, self.cfg, self.presigner), record=True)
        finally:
            if self.presigner is not None:
                self.presigner.clear()

    def group_of(self, prompt: int) -> int:
        """The first prompt of the group a prompt belongs to."""
        while (parent := self.prompt_parent[prompt]) != prompt:
            prompt = parent
        return prompt

    def _run(self, source, record: bool) -> dict[int, list[str]]:
        ids = source.ids
        prompts = self._prompts(source, record)
        found: dict[int, tuple[str, str, float]] = {}  # row -> (kind, id it repeats, similarity)
        for i, p in enumerate(prompts):
            if (match := self.prompt_match.get(p)) is not None:
                found[i] = ("prompt", self.prompt_row_id[match.key], match.similarity)
        dropped = np.array([p in self.prompt_dropped for p in prompts], dtype=bool)
        if "pair" in self.indexes:
            self._pairs(source, prompts, ~dropped, found, record)
        if not record:
            return {}
        reasons: dict[int, list[str]] = {}
        table = source.table
        rows, sources = table.column("row").to_pylist(), table.column("source").to_pylist()
        for i, (kind, of, sim) in sorted(found.items()):
            policy = self.cfg.prompt_policy if kind == "prompt" else self.cfg.pair_policy
            action = "quarantined" if policy == "keep_one" else "flagged"
            self.counts[action] += 1
            if kind == "prompt":
                root = self.prompt_row_id[self.group_of(prompts[i])]
            else:
                root = self.pair_id[self._pair_group(self._pair_key_of_row[i])]
            member = {"id": ids[i], "row": rows[i], "source": sources[i], "of": of}
            member.update(similarity=round(sim, 3), action=action)
            self.groups.setdefault((kind, root), []).append(member)
            if action == "quarantined":
                reasons[i] = [f"near_duplicate_{kind}: of {of} (similarity {sim:.2f})"]
        for i, p in enumerate(prompts):
            group = self.group_of(p)
            if group != p and i not in reasons:  # kept rows of a group take its split side
                self.split_buckets[ids[i]] = self.prompt_bucket[group]
        return reasons

    def _pair_group(self, key: int) -> int:
        while (parent := self.pair_parent.get(key)) is not None:
            key = parent
        return key

    def _prompts(self, source, record) -> list[int]:
        """The prompt key of each row; each new prompt is matched against every earlier one."""
        ids, buckets = source.ids, source.buckets
        # each exact prompt's key; one not seen before gets the next key, in order of first row
        codes, uniques = pd.factorize(source.exact)
        first_row = np.unique(codes, return_index=True)[1] if len(codes) else codes
        known, at = self._prompt_hashes, np.zeros(len(uniques), dtype=np.int64)
        if len(known):
            at = np.minimum(np.searchsorted(known, uniques), len(known) - 1)
        seen = (known[at] == uniques) if len(known) else np.zeros(len(uniques), bool)
        key_of = np.empty(len(uniques), dtype=np.int64)
        key_of[seen] = self._prompt_keys[at[seen]]
        fresh = np.flatnonzero(~seen)
        base = len(self.prompt_parent)
        key_of[fresh] = np.arange(base, base + len(fresh))
        new_rows = first_row[fresh].tolist()
        self.prompt_parent.extend(range(base, base + len(fresh)))
        self.prompt_row_id.extend(ids[i] for i in new_rows)
        self.prompt_bucket.extend(buckets[new_rows].astype(np.float64).tolist())
        hashes = np.concatenate([known, uniques[fresh].astype(np.uint64)])
        order = np.argsort(hashes, kind="stable")
        self._prompt_hashes = hashes[order]
        self._prompt_keys = np.concatenate([self._prompt_keys, key_of[fresh]])[order]
        keys: list[int] = key_of[codes].tolist()
        if self.kept is not None and record:
            self.kept.rows(ids, source.exact, buckets)
        index = self.indexes.get("prompt")
        if index is None or not new_rows:
            return keys
        drop = record and self.cfg.prompt_policy == "keep_one"
        new_keys = [keys[i] for i in new_rows]
        units = source.prompt_units(index, new_rows)
        if self.kept is not None and record:
            self.kept.prompts(source.exact[new_rows], units)
        matches = self._match(index, units, None, drop)
        for p, match in zip(new_keys, matches, strict=True):
            if match is not None:
                self.prompt_match[p] = match
                self.prompt_parent[p] = self.group_of(match.key)
                if drop:
                    self.prompt_dropped.add(p)
        return keys

    def _pairs(self, source, prompts, candidates, found, record) -> None:
        """Match each pair (rows not already quarantined by prompt) against every earlier one."""
        ids = source.ids
        index = self.indexes["pair"]
        rows = np.flatnonzero(candidates).tolist()
        first = len(self.pair_id)
        self._pair_key_of_row = {i: first + n for n, i in enumerate(rows)}
        self.pair_id.extend(ids[i] for i in rows)
        self.pair_prompt.extend(prompts[i] for i in rows)
        if not rows:
            return
        drop = record and self.cfg.pair_policy == "keep_one"
        same = [ids[i] for i in rows]
        units = source.pair_units(index, rows)
        if self.kept is not None and record:
            self.kept.pairs(same, units)
        matches = self._match(index, units, same, drop)
        for n, (i, match) in enumerate(zip(rows, matches, strict=True)):
            if match is None:
                continue
            self.pair_parent[first + n] = match.key
            if i in found:
                continue  # a row is reported once, as a prompt-level member first
            found[i] = ("pair", self.pair_id[match.key], match.similarity)
            p, q = self.group_of(prompts[i]), self.group_of(self.pair_prompt[match.key])
            if p == q or drop:
                continue
            if self.prompt_row_id[p] == ids[i] and prompts[i] == p:
                self.prompt_parent[p] = q  # a prompt first seen in this row joins the group
            elif record:
                self.counts["split_conflicts"] += 1

    def _match(self, index: _Index, units: Units, ids: list[str] | None, drop: bool):
        """For each new unit, in order, the earlier unit it repeats (or None); then index them.

        ``ids``: the record ids of pairs, so a row of an earlier version is not its own match.
        """
        sig8, bands, has_text = units.sig8, units.bands, units.has_text
        earlier = index.earlier_candidates(bands)
        # new units that share a band with another new unit: settled one by one, in order
        suspect = np.zeros(len(sig8), dtype=bool)
        suspect[list(earlier)] = True
        for column in np.ascontiguousarray(bands.T):
            suspect |= _shared(column)
        base = index.size
        matches: list[_Match | None] = [None] * len(sig8)
        indexed = has_text.copy()
        local: dict[tuple[int, int], int] = {}
        for i in np.flatnonzero(has_text & suspect).tolist():
            candidates = set(earlier.get(i, ()))
            row_bands = bands[i].tolist()
            for b in range(index.bands):
                if (key := local.get((b, row_bands[b]))) is not None:
                    candidates.add(key)
            best = None
            keys = [
                key
                for key in sorted(candidates)
                # the same record, kept in an earlier version, is not its own match
                if ids is None or self.pair_id[key] != ids[i]
            ]
            if keys:
                others = np.stack(
                    [sig8[key - base] if key >= base else index.signature(key) for key in keys]
                )
                for key, sim in zip(keys, _similarities(sig8[i], others).tolist(), strict=True):
                    if sim >= index.threshold and (best is None or sim > best.similarity):
                        best = _Match(key, sim)
            matches[i] = best
            if best is not None and drop:
                indexed[i] = False
                continue
            for b in range(index.bands):
                local.setdefault((b, row_bands[b]), base + i)
        index.add(sig8, bands, indexed)
        return matches

    def report(self) -> dict:
        """Counts, the largest groups with their members, and the split side of kept members."""
        groups = [
            {
                "kind": kind,
                "representative": root,
                "representative_in_earlier_version": root in self.earlier_ids,
                "members": members,
            }
            for (kind, root), members in sorted(
                self.groups.items(), key=lambda item: (-len(item[1]), item[0])
            )
        ]
        return {
            "thresholds": {"prompt": self.cfg.prompt_threshold, "pair": self.cfg.pair_threshold},
            "policy": {"prompt": self.cfg.prompt_policy, "pair": self.cfg.pair_policy},
            **self.counts,
            "groups_total": len(groups),
            "groups": groups[: self.cfg.report_groups],
            "split_buckets": self.split_buckets,
        }


def _joined(column) -> pa.Array:
    """Each row's message contents joined by newlines."""
    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return pc.binary_join(
        pa.ListArray.from_arrays(lists.offsets, pc.struct_field(lists.values, "content")), "\n"
    )
