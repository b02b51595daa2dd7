"""Near-duplicate signatures computed ahead, in worker processes, while the ingest does the rest.

Signing (normalizing, shingling, MinHash, band hashes) is most of the check's cost, and the
rest of the ingest (parsing, Great Expectations, the writers) keeps one core busy. The ingest
hands each read chunk to ``Presigner.submit``; worker processes sign it (processes, not
threads: rensa hands its MinHash values back as Python integers, under the GIL, so threads
would take turns with the ingest's own thread there). When the check reaches those rows it
takes their units by record id (an id is a hash of the prompt, chosen and rejected, so one id
is one text). Rows it cannot find are signed there, as are small inputs (a process costs a
second to start).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pandas as pd
import pyarrow as pa

from alignment.quality_config import NearDuplicateConfig

PIECE_ROWS = 8192  # rows signed by one task: a worker's memory grows with it
MIN_ROWS = 20_000  # a chunk smaller than this is signed by the check itself


def _sign(cfg: NearDuplicateConfig, shapes: dict[str, tuple[float, int, int]], table: pa.Table):
    """A worker's task: the units of the records' prompts and pairs, by kind, under indexes of
    these (threshold, bands, rows)."""
    from alignment.data.quality.near_duplicates import _Index, _joined, pair_texts, sign_records

    indexes = {kind: _Index(*shape) for kind, shape in shapes.items()}
    return sign_records(pair_texts(table, _joined(table.column("prompt"))), indexes, cfg)


class Presigner:
    """Units of submitted records' prompts and pairs, by record id, until ``clear``."""

    def __init__(self, cfg: NearDuplicateConfig, indexes: dict, workers: int | None = None):
        self.cfg, self.indexes = cfg, indexes
        self.workers = workers or min(2, os.cpu_count() or 1)
        self.pool: ProcessPoolExecutor | None = None
        self.parts: list[tuple[pa.Array, Future]] = []  # (ids, units by kind)
        self._ids: pd.Index | None = None

    def submit(self, table: pa.Table, min_rows: int = MIN_ROWS) -> None:
        """Start signing the records of ``table`` (a record table). The workers start with a
        table of ``min_rows``; once started they take every table (a group's short last chunk
        too, or the check would sign the whole group itself)."""
        if not table.num_rows or not self.indexes:
            return
        if self.pool is None and table.num_rows < min_rows:
            return
        if multiprocessing.current_process().daemon:
            return  # a daemonic process may not start workers: the check signs
        if self.pool is None:
            # spawned, not forked: the ingest has threads (writers, a GX import) by now
            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        shapes = {kind: (i.threshold, i.bands, i.rows) for kind, i in self.indexes.items()}
        # the workers join the texts too: only the message columns travel
        messages = table.select(["prompt", "chosen", "rejected"])
        ids = table.column("id").combine_chunks()
        for start in range(0, table.num_rows, PIECE_ROWS):
            size = min(PIECE_ROWS, table.num_rows - start)
            future = self.pool.submit(_sign, self.cfg, shapes, _piece(messages, start, size))
            self.parts.append((ids.slice(start, size), future))
        self._ids = None

    def units(self, kind: str, ids: list[str]):
        """The units of these record ids (waiting for their signing), or None when one of
        them was never submitted."""
        if not self.parts or kind not in self.indexes:
            return None
        if self._ids is None:
            self._ids = pd.Index(pa.concat_arrays([p[0] for p in self.parts]).to_pylist())
        at = self._ids.get_indexer(ids) if self._ids.is_unique else _first_positions(self._ids, ids)
        if (at < 0).any():
            return None
        from alignment.data.quality.near_duplicates import Units

        try:
            done = [p[1].result()[kind] for p in self.parts]
        except BrokenProcessPool:  # a worker was killed (memory?): the check signs
            return None
        # only the rows asked for are gathered, a part at a time (no copy of all parts)
        bounds = np.cumsum([0] + [len(u.has_text) for u in done])
        part = np.searchsorted(bounds, at, side="right") - 1
        first = done[0]
        out = Units(
            np.empty((len(at), first.sig8.shape[1]), first.sig8.dtype),
            np.empty((len(at), first.bands.shape[1]), first.bands.dtype),
            np.empty(len(at), bool),
        )
        for p in np.unique(part).tolist():
            rows = np.flatnonzero(part == p)
            local = at[rows] - bounds[p]
            u = done[p]
            out.sig8[rows], out.bands[rows], out.has_text[rows] = (
                u.sig8[local],
                u.bands[local],
                u.has_text[local],
            )
        return out

    def clear(self) -> None:
        """Forget what was submitted (the check has taken it)."""
        self.parts, self._ids = [], None

    def close(self) -> None:
        self.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class _Piece:
    """Rows of a table, pickled as an Arrow IPC stream of only these rows' bytes, and unpickled
    as a table. (A pickled slice carries its whole table's buffers: a read chunk's for every
    piece, several times the piece, copied and sent for each.) The stream is made when the
    piece is sent, so pieces waiting for a worker hold no copy."""

    def __init__(self, table: pa.Table):
        self.table = table

    def __reduce__(self):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.table.schema) as writer:
            writer.write_table(self.table)
        return _read_piece, (sink.getvalue(),)


def _read_piece(stream: pa.Buffer) -> pa.Table:
    return pa.ipc.open_stream(stream).read_all()


def _piece(table: pa.Table, start: int, size: int) -> _Piece:
    """Rows ``start:start+size`` of ``table``, to be sent to a worker."""
    return _Piece(table.slice(start, size))


def _first_positions(index: pd.Index, ids: list[str]) -> np.ndarray:
    """Position of each id's first occurrence (an exact repeat gives one id twice)."""
    codes, uniques = pd.factorize(index)  # codes in order of first appearance
    first = np.unique(codes, return_index=True)[1]
    return np.where(
        (found := pd.Index(uniques).get_indexer(ids)) >= 0, first[np.maximum(found, 0)], -1
    )
