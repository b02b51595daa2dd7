"""A pytest plugin: Prefect's console log handler writes to the sys.stderr of the moment.

Prefect sets its logging up once per process, and its console handler (on the root logger, a
rich Console inside) keeps the stream sys.stderr was at that moment. When that happens inside a
test that captures with capsys or capfd, the handler keeps that test's capture stream, which
pytest closes after the test; every later Prefect log line in the process then fails with "I/O
operation on closed file". Which test sets Prefect's logging up first depends on the order tests
run in (another order under pytest-xdist). Here Prefect's console handlers write to a stream
that looks up the current sys.stderr at each write, as tests/dvc_streams.py does for DVC.
"""

from __future__ import annotations

import logging
import sys

import pytest
from dvc_streams import STDERR


def follow_current_streams() -> None:
    """Point Prefect's console handlers at the current sys.stderr (cheap once done)."""
    if "prefect.logging.handlers" not in sys.modules:
        return
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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    follow_current_streams()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item) -> None:
    follow_current_streams()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item) -> None:
    follow_current_streams()
