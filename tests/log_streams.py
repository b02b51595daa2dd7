"""A pytest plugin: DVC's and Prefect's console log handlers write to the sys.stdout /
sys.stderr of the moment.

Both libraries set their log handlers up once per process, bound to the stream objects that
sys.stdout and sys.stderr are at that moment (`import dvc`; Prefect's logging setup, whose
console handler on the root logger holds a rich Console). When that first happens inside a test
that captures with capsys or capfd, the handlers keep that test's capture stream, which pytest
closes after the test; the library's next log line, in any later test of the process, then fails
with "I/O operation on closed file". Which test comes first depends on the order tests run in
(another order under pytest-xdist), so the failure moves around. Here every such handler gets a
stream that looks up the current sys.stdout / sys.stderr at each write, so output lands wherever
the running test captures it.
"""

from __future__ import annotations

import sys

import pytest

DVC_LOGGERS = ("dvc", "dvc_objects", "dvc_data")


class CurrentStream:
    """Writes to whatever sys.<name> is when written to."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _stream(self):
        return getattr(sys, self.name)

    def write(self, text: str) -> int:
        return self._stream().write(text)

    def flush(self) -> None:
        self._stream().flush()

    def isatty(self) -> bool:
        return False


STDOUT, STDERR = CurrentStream("stdout"), CurrentStream("stderr")


def follow_dvc_streams() -> None:
    """Point DVC's stream handlers at the current streams (once DVC is imported; cheap after)."""
    if "dvc.logger" not in sys.modules:
        return
    import logging

    for name in DVC_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            stream = getattr(handler, "stream", None)
            if stream is None or isinstance(stream, CurrentStream):
                continue
            # dvc.logger.setup gives warnings and errors to stderr, the rest to stdout; not
            # setStream, which flushes the old stream, maybe closed by now
            handler.stream = STDERR if handler.level >= logging.WARNING else STDOUT


def follow_prefect_streams() -> None:
    """Point Prefect's console handlers at the current sys.stderr (once Prefect's logging is
    imported; cheap after)."""
    if "prefect.logging.handlers" not in sys.modules:
        return
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()]
    loggers += [
        x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and handler.stream is not STDERR:
                handler.stream = STDERR  # not setStream, which flushes the old, maybe closed one
                handler.console.file = STDERR


def follow_all() -> None:
    follow_dvc_streams()
    follow_prefect_streams()


# before each phase: a test that set a library's logging up under capsys leaves its handlers on
# a closed stream
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    follow_all()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item) -> None:
    follow_all()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item) -> None:
    follow_all()
