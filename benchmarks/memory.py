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
