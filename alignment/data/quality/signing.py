"""Near-duplicate signatures computed ahead, in worker processes, while the ingest does the rest.

Signing (normalizing, shingling, MinHash, band hashes) is most of the check's cost, and the
rest of the ingest (parsing, Great Expectations, the writers) keeps one core busy. The ingest
hands each read chunk to ``Presigner.submit``; worker processes sign it (processes, not
threads: rensa hands its MinHash values back as Python integers, under the GIL, and a thread
doing that stalls the ingest's own thread); when the check reaches those rows it takes their
units by record id (an id is a hash of the prompt, chosen and rejected, so one id is one text).
Rows it cannot find are signed there, as are small inputs (a process costs a second to start).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa

from alignment.quality_config import NearDuplicateConfig

PIECE_ROWS = 16384  # rows signed by one task
MIN_ROWS = 20_000  # a chunk smaller than this is signed by the check itself


def _sign(cfg: NearDuplicateConfig, shape: tuple[float, int, int], text: pa.Array):
    """A worker's task: the units of ``text`` under an index of that (threshold, bands, rows)."""
    from alignment.data.quality.near_duplicates import _Index

    return _Index(*shape).units(text, cfg)


class Presigner:
    """Units of submitted records' prompts and pairs, by record id, until ``clear``."""

    def __init__(self, cfg: NearDuplicateConfig, indexes: dict, workers: int | None = None):
        self.cfg, self.indexes = cfg, indexes
        self.workers = workers or min(2, os.cpu_count() or 1)
        self.pool: ProcessPoolExecutor | None = None
        self.parts: list[tuple[pa.Array, dict[str, Future]]] = []
        self._ids: pd.Index | None = None

    def submit(self, table: pa.Table, min_rows: int = MIN_ROWS) -> None:
        """Start signing the records of ``table`` (a record table) if it has ``min_rows``."""
        from alignment.data.quality.near_duplicates import _joined, pair_texts

        if table.num_rows < max(min_rows, 1):
            return
        if self.pool is None:
            # spawned, not forked: the ingest has threads (writers, a GX import) by now
            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        prompt = _joined(table.column("prompt"))
        texts = {"prompt": prompt, "pair": pair_texts(table, prompt)}
        ids = table.column("id").combine_chunks()
        for start in range(0, table.num_rows, PIECE_ROWS):
            size = min(PIECE_ROWS, table.num_rows - start)
            futures = {
                kind: self.pool.submit(
                    _sign,
                    self.cfg,
                    (index.threshold, index.bands, index.rows),
                    texts[kind].slice(start, size),
                )
                for kind, index in self.indexes.items()
            }
            self.parts.append((ids.slice(start, size), futures))
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

        done = [p[1][kind].result() for p in self.parts]
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


def _first_positions(index: pd.Index, ids: list[str]) -> np.ndarray:
    """Position of each id's first occurrence (an exact repeat gives one id twice)."""
    codes, uniques = pd.factorize(index)  # codes in order of first appearance
    first = np.unique(codes, return_index=True)[1]
    return np.where(
        (found := pd.Index(uniques).get_indexer(ids)) >= 0, first[np.maximum(found, 0)], -1
    )
