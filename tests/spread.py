"""A pytest plugin: how `make test` spreads the suite over pytest-xdist workers.

`make test` runs `--dist loadfile --no-loadscope-reorder`: xdist hands out work units in
collection order, one at a time as a worker frees up, and a unit's tests all run on one worker.
Here (the scheduler below) a unit is a test file, as with plain `loadfile`, except that all of
`tests/integration/` is one unit: those tests share the session's real servers (PostgreSQL,
Prefect, MLflow, S3), which would otherwise start, and keep running, on every worker. (xdist's
own `loadgroup` cannot do this here: with pytest 9 its group marks no longer reach the
scheduler.) The units are put in order of their measured seconds (tests/file_seconds.json),
longest first: in alphabetical order a 100-second file could start last and keep one worker
busy while the other sits idle. Files not listed (new or quick ones) follow in their usual
order, and within a unit the order is unchanged. A serial run keeps pytest's own order.

Refresh the seconds after a file's cost changes a lot:
    python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=0 tests > d.txt
    python tests/spread.py d.txt
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SECONDS = Path(__file__).with_name("file_seconds.json")
ROOT = Path(__file__).resolve().parent.parent
SHARED_SERVERS = "tests/integration/"


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def group_of(nodeid: str) -> str:
    """The work unit of a test: the real-server tests together, else the test's file."""
    name = file_of(nodeid)
    return SHARED_SERVERS.rstrip("/") if name.startswith(SHARED_SERVERS) else name


def load_seconds(path: Path = SECONDS) -> dict[str, float]:
    return json.loads(path.read_text()) if path.exists() else {}


def order_by_seconds(items: list, seconds: dict[str, float]) -> list:
    """`items` with the units of most seconds (their files' sum) first; a stable sort keeps
    every other order."""
    per_unit: dict[str, float] = defaultdict(float)
    for name, value in seconds.items():
        per_unit[group_of(name)] += value
    return sorted(items, key=lambda item: -per_unit.get(group_of(item.nodeid), 0.0))


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # not an xdist worker: pytest's own order
        return
    items[:] = order_by_seconds(items, load_seconds())


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, called where it is installed
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupScheduling(LoadFileScheduling):
        """`loadfile`, with the real-server tests one unit (see group_of)."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


DURATION = re.compile(r"^\s*([0-9.]+)s\s+(?:setup|call|teardown)\s+(\S+)")


def seconds_from_durations(lines) -> dict[str, float]:
    """Seconds per test file, summed over the setup, call and teardown lines of --durations=0."""
    total: dict[str, float] = defaultdict(float)
    for line in lines:
        found = DURATION.match(line)
        if found:
            total[file_of(found.group(2))] += float(found.group(1))
    return {name: round(value, 1) for name, value in sorted(total.items()) if value >= 1.0}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/spread.py PYTEST_OUTPUT_WITH_DURATIONS")
    measured = seconds_from_durations(Path(sys.argv[1]).read_text().splitlines())
    if not measured:
        sys.exit(f"{sys.argv[1]}: no --durations lines found")
    SECONDS.write_text(json.dumps(measured, indent=1) + "\n")
    print(f"{len(measured)} files, {sum(measured.values()):.0f} s in all -> {SECONDS}")
