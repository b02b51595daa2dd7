"""Stores that several runs write at once (the reference log-prob cache, the constitution
store): a reader only ever sees one writer's whole file, never a mix or a cut."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

IDS = [f"pair-{i}" for i in range(2000)]


def _fill_cache(path: str, writer: int, rounds: int) -> int:
    from alignment.train import refcache

    for _ in range(rounds):
        # every value of one write is the writer's number: a mixed file would show two numbers
        refcache.save(Path(path), IDS, [float(writer)] * len(IDS), [-float(writer)] * len(IDS))
    return writer


def _store_constitution(folder: str, rounds: int) -> str:
    from alignment.constitution import load_constitution, store_constitution

    constitution = load_constitution()
    for _ in range(rounds):
        target = store_constitution(constitution, Path(folder))
    return str(target)


def test_reference_cache_written_by_four_processes_at_once_reads_whole(tmp_path):
    from alignment.train import refcache

    path = tmp_path / "cache" / "ref-logps" / "key.parquet"
    context = multiprocessing.get_context("spawn")
    seen: set[float] = set()
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        jobs = [pool.submit(_fill_cache, str(path), writer, 15) for writer in range(1, 5)]
        while not all(job.done() for job in jobs):
            got = refcache.load(path, IDS)
            if got is not None:
                chosen, rejected = got
                assert len(set(chosen)) == 1 and rejected == [-c for c in chosen]
                seen.add(chosen[0])
            time.sleep(0.01)
        assert sorted(job.result() for job in jobs) == [1, 2, 3, 4]
    chosen, _ = refcache.load(path, IDS)
    assert len(set(chosen)) == 1 and chosen[0] in {1.0, 2.0, 3.0, 4.0}
    assert not list(path.parent.glob(".*.tmp")), "a writer left its temporary file"


def test_constitution_store_written_by_three_processes_at_once_reads_back(tmp_path):
    from alignment.constitution import load_constitution

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=context) as pool:
        targets = set(pool.map(_store_constitution, [str(tmp_path)] * 3, [30] * 3))
    (target,) = targets
    stored = load_constitution(target)
    assert stored.hash == load_constitution().hash
    assert [p.name for p in tmp_path.iterdir()] == [Path(target).name]
