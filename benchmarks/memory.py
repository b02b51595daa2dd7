"""A process's own peak resident memory, for benchmarks that measure each variant in a child.

``getrusage(RUSAGE_SELF).ru_maxrss`` is not the child's own on Linux: a child started with
fork or vfork then exec carries the parent's peak over the exec (the kernel keeps the largest
resident size the task ever had, old address space included), so every child of a large parent
reports at least the parent's peak. ``VmHWM`` in /proc/self/status is the peak of the current
address space only, which is the child's own after exec.
"""

from __future__ import annotations

import resource


def own_peak_rss_mb() -> float:
    """Peak resident memory of this process's address space, in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


class TreePeak:
    """Peak resident memory of this process and its children together (worker processes
    included), sampled every ``interval`` seconds from /proc while in a ``with`` block."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak_mb = interval, 0.0

    def __enter__(self):
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, own_peak_rss_mb())

    def _sample(self) -> None:
        import os

        me = os.getpid()
        while not self._stop.wait(self.interval):
            total = 0
            for pid in [me, *_descendants(me)]:
                try:
                    with open(f"/proc/{pid}/status", encoding="ascii") as status:
                        total += next(
                            int(line.split()[1]) for line in status if line.startswith("VmRSS:")
                        )
                except (OSError, StopIteration):
                    continue  # ended between listing and reading
            self.peak_mb = max(self.peak_mb, total / 1024)


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, and theirs (from /proc/<pid>/task/*/children)."""
    import os

    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as fh:
                    kids = [int(x) for x in fh.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out
