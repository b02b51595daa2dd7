"""A data version's near-duplicate signature index: what the check needs of its accepted rows.

The near-duplicate check compares a new input with every earlier version. Signing those
versions' texts again at each ingest would make an ingest's cost grow with the whole history;
instead each version has an index, one row per accepted row: the id, the exact-prompt hash and
split bucket, and the MinHash (8-bit values and LSH band hashes) of the prompt (first row of each
exact prompt only) and of the pair. ``NearDuplicates.add_earlier`` takes it in place of the rows
and reaches the same state.

An index is a pure function of the version's accepted rows and the signing parameters, so it is
named by both (``<version id>-<parameters>.parquet``): it never goes stale, a changed parameter
gives another name, and a version without one (made before indexes, or on another machine) gets
one built from its rows on first use.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from alignment.data.quality.near_duplicates import NearDuplicates, Units, _Index, _TableRows
from alignment.quality_config import NearDuplicateConfig

FORMAT = 1
FILE = "signatures.parquet"


def parameters(cfg: NearDuplicateConfig) -> dict:
    """What the signatures depend on: a change in any of these means another index."""
    nd = NearDuplicates(cfg)
    return {
        "format": FORMAT,
        "num_perm": cfg.num_perm,
        "seed": cfg.seed,
        "shingle_words": cfg.shingle_words,
        **{kind: [idx.bands, idx.rows] for kind, idx in nd.indexes.items()},
    }


def parameters_key(cfg: NearDuplicateConfig) -> str:
    """A short name for the parameters, part of an index's file name."""
    return _key(parameters(cfg))


def _key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def file_key(path) -> str | None:
    """The parameters' name of an index file (None: not an index)."""
    import pyarrow.parquet as pq

    params = (pq.read_schema(path).metadata or {}).get(b"alignment.signatures")
    return None if params is None else _key(json.loads(params))


def schema(cfg: NearDuplicateConfig) -> pa.Schema:
    """One row per accepted row; ``<kind>_signed`` says whether that row carries the unit."""
    nd = NearDuplicates(cfg)
    fields = [("id", pa.string()), ("prompt_hash", pa.uint64()), ("prompt_bucket", pa.float64())]
    for kind in ("prompt", "pair"):
        bands = nd.indexes[kind].bands if kind in nd.indexes else 0
        fields += [
            (f"{kind}_signed", pa.bool_()),
            (f"{kind}_has_text", pa.bool_()),
            (f"{kind}_sig8", pa.binary(cfg.num_perm)),
            (f"{kind}_bands", pa.binary(max(bands, 1) * 8)),
        ]
    meta = {"alignment.signatures": json.dumps(parameters(cfg), sort_keys=True)}
    return pa.schema(fields, metadata=meta)


def matches(table: pa.Table, cfg: NearDuplicateConfig) -> bool:
    """Whether an index read from disk was made with these parameters."""
    meta = (table.schema.metadata or {}).get(b"alignment.signatures")
    return meta is not None and json.loads(meta) == parameters(cfg)


def _fixed(values: np.ndarray, width: int) -> pa.Array:
    if not len(values):
        return pa.array([], pa.binary(width))
    data = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), -1)
    if data.shape[1] != width:  # a kind that is not checked, or no rows: zero bytes
        data = np.zeros((len(values), width), dtype=np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(values), [None, pa.py_buffer(data.tobytes())]
    )


def _matrix(column, dtype, width: int) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    item = np.dtype(dtype).itemsize
    flat = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    start = arr.offset * width * item
    flat = flat[start : start + len(arr) * width * item]
    return flat.view(dtype).reshape(len(arr), width)


def index_table(
    cfg: NearDuplicateConfig,
    ids: list[str],
    exact: np.ndarray,
    buckets: np.ndarray,
    units: dict[str, tuple[np.ndarray, Units]],
) -> pa.Table:
    """The index rows: ``units[kind]`` is (which rows carry the unit, the units of all rows)."""
    sch = schema(cfg)
    n = len(ids)
    columns = [pa.array(ids, pa.string()), pa.array(exact, pa.uint64()), pa.array(buckets)]
    for kind in ("prompt", "pair"):
        signed, u = units.get(kind, (np.zeros(n, bool), None))
        if u is None:
            u = Units(np.zeros((n, 1), np.uint8), np.zeros((n, 1), np.uint64), np.zeros(n, bool))
        columns += [
            pa.array(signed, pa.bool_()),
            pa.array(u.has_text, pa.bool_()),
            _fixed(u.sig8, sch.field(f"{kind}_sig8").type.byte_width),
            _fixed(u.bands, sch.field(f"{kind}_bands").type.byte_width),
        ]
    return pa.Table.from_arrays(columns, schema=sch)


def _first_rows(exact: np.ndarray, seen: set[int]) -> np.ndarray:
    """Rows that are the first with their exact prompt (not seen before); ``seen`` grows."""
    first = np.zeros(len(exact), dtype=bool)
    for i, h in enumerate(exact.tolist()):
        if h not in seen:
            seen.add(h)
            first[i] = True
    return first


def build_index(table: pa.Table, cfg: NearDuplicateConfig) -> pa.Table:
    """The signature index of a version's accepted rows, signed from their text."""
    nd = NearDuplicates(cfg)
    rows = _TableRows(table, cfg)
    first = _first_rows(rows.exact, set())
    return index_table(cfg, rows.ids, rows.exact, rows.buckets, _units(nd, rows, first))


def _units(nd: NearDuplicates, rows: _TableRows, first: np.ndarray) -> dict:
    n = len(rows.ids)
    out = {}
    if "prompt" in nd.indexes:
        at = np.flatnonzero(first).tolist()
        signed = nd.indexes["prompt"].units(rows.prompt_text.take(pa.array(at, pa.int64())), nd.cfg)
        out["prompt"] = (first, _scatter(signed, at, n, nd.indexes["prompt"].bands, nd.cfg))
    if "pair" in nd.indexes:
        out["pair"] = (np.ones(n, bool), rows.pair_units(nd.indexes["pair"], list(range(n))))
    return out


def _scatter(units: Units, at: list[int], n: int, bands: int, cfg: NearDuplicateConfig) -> Units:
    full = Units(
        np.zeros((n, cfg.num_perm), np.uint8), np.zeros((n, bands), np.uint64), np.zeros(n, bool)
    )
    full.sig8[at], full.bands[at], full.has_text[at] = units.sig8, units.bands, units.has_text
    return full


class SignedRows:
    """An index as the check's row source: units are read, never signed."""

    table = None  # earlier versions are indexed, never recorded

    def __init__(self, table: pa.Table, cfg: NearDuplicateConfig, indexes: dict[str, _Index]):
        self.ids = table.column("id").to_pylist()
        self.exact = table.column("prompt_hash").to_numpy()
        self.buckets = table.column("prompt_bucket").to_numpy()
        self._table, self._cfg, self._indexes = table, cfg, indexes

    def _units(self, kind: str, rows: list[int]) -> Units:
        t, index = self._table, self._indexes[kind]
        signed = t.column(f"{kind}_signed").to_numpy(zero_copy_only=False)[rows]
        if not signed.all():
            raise RuntimeError(f"signature index lacks the {kind} of rows it needs; rebuild it")
        sig8 = _matrix(t.column(f"{kind}_sig8"), np.uint8, self._cfg.num_perm)[rows]
        bands = _matrix(t.column(f"{kind}_bands"), np.uint64, index.bands)[rows]
        has = t.column(f"{kind}_has_text").to_numpy(zero_copy_only=False)[rows]
        return Units(sig8, bands, has)

    def prompt_units(self, index: _Index, rows: list[int]) -> Units:
        return self._units("prompt", rows)

    def pair_units(self, index: _Index, rows: list[int]) -> Units:
        return self._units("pair", rows)


@dataclass
class KeptSignatures:
    """The units an ingest computed for its own rows, turned into its index as rows are accepted
    (so signing happens once per ingest, not again for the index)."""

    cfg: NearDuplicateConfig
    # blocks as the check computed them: (keys, values...); found again by key in ``take``
    row: list[tuple[list[str], np.ndarray, np.ndarray]] = field(default_factory=list)
    prompt: list[tuple[np.ndarray, Units]] = field(default_factory=list)  # by exact prompt hash
    pair: list[tuple[list[str], Units]] = field(default_factory=list)  # by record id
    seen: set[int] = field(default_factory=set)  # exact prompts already in the index

    def rows(self, ids: list[str], exact: np.ndarray, buckets: np.ndarray) -> None:
        self.row.append((ids, exact, buckets))

    def prompts(self, exact: np.ndarray, units: Units) -> None:
        self.prompt.append((exact, units))

    def pairs(self, ids: list[str], units: Units) -> None:
        self.pair.append((ids, units))

    def take(self, accepted: pa.Table, nd: NearDuplicates) -> pa.Table:
        """Index rows of accepted rows; what was not kept (rare) is signed here. Clears what
        it kept: rows not accepted now are never accepted later."""
        ids = accepted.column("id").to_pylist()
        row_ids = [i for block in self.row for i in block[0]]
        # the usual case (nothing quarantined): the rows as the check saw them, in order
        at = np.arange(len(ids)) if row_ids == ids else _positions(row_ids, ids)
        if (at < 0).any():
            rows = _TableRows(accepted, self.cfg)
            exact, buckets = rows.exact, rows.buckets
        else:
            exact = _concat([block[1] for block in self.row], np.uint64)[at]
            buckets = _concat([block[2] for block in self.row], np.float64)[at]
        first = _first_rows(exact, self.seen)
        units = {}
        for kind, want, kept, keys in (
            ("prompt", first, self.prompt, exact),
            ("pair", np.ones(len(ids), bool), self.pair, ids),
        ):
            if kind not in nd.indexes:
                continue
            idx = nd.indexes[kind]
            # the usual case again: every accepted row kept, in order (none at all is not it)
            if kind == "pair" and kept and [i for block in kept for i in block[0]] == ids:
                units[kind] = (want, _joined_units([block[1] for block in kept]))
                continue
            full = Units(
                np.zeros((len(ids), self.cfg.num_perm), np.uint8),
                np.zeros((len(ids), idx.bands), np.uint64),
                np.zeros(len(ids), bool),
            )
            rows_wanted = np.flatnonzero(want)
            where = _positions(
                np.concatenate([np.asarray(block[0]) for block in kept]) if kept else [],
                np.asarray(keys)[rows_wanted],
            )
            got = where >= 0
            if got.any():
                block_units = [block[1] for block in kept]
                found = rows_wanted[got]
                full.sig8[found] = np.concatenate([u.sig8 for u in block_units])[where[got]]
                full.bands[found] = np.concatenate([u.bands for u in block_units])[where[got]]
                full.has_text[found] = np.concatenate([u.has_text for u in block_units])[where[got]]
            missing = rows_wanted[~got].tolist()
            if missing:
                rows = _TableRows(accepted, self.cfg)
                signed = (rows.prompt_units if kind == "prompt" else rows.pair_units)(idx, missing)
                full.sig8[missing], full.bands[missing] = signed.sig8, signed.bands
                full.has_text[missing] = signed.has_text
            units[kind] = (want, full)
        self.row.clear()
        self.prompt.clear()
        self.pair.clear()
        return index_table(self.cfg, ids, exact, buckets, units)


def _joined_units(blocks: list[Units]) -> Units:
    return Units(
        np.concatenate([u.sig8 for u in blocks]),
        np.concatenate([u.bands for u in blocks]),
        np.concatenate([u.has_text for u in blocks]),
    )


def _concat(blocks: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype)


def _positions(keys, wanted) -> np.ndarray:
    """Position in ``keys`` of each wanted key (its last, as a dict keeps it), -1 if absent."""
    import pandas as pd

    if not len(keys):
        return np.full(len(wanted), -1, dtype=np.int64)
    index = pd.Index(keys)
    if not index.is_unique:
        last = ~index.duplicated(keep="last")
        index, place = index[last], np.flatnonzero(last)
        at = index.get_indexer(wanted)
        return np.where(at >= 0, place[np.maximum(at, 0)], -1)
    return index.get_indexer(wanted)


class IndexWriter:
    """An index written a part at a time under a temporary name, renamed when complete."""

    def __init__(self, path, cfg: NearDuplicateConfig):
        import os
        import tempfile
        from pathlib import Path

        import pyarrow.parquet as pq

        self.path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        os.close(fd)
        self.tmp = Path(tmp)
        self.writer = pq.ParquetWriter(str(self.tmp), schema(cfg), compression="zstd")

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.writer.write_table(table)

    def close(self):
        self.writer.close()
        self.tmp.replace(self.path)
        return self.path

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)
