"""Named points where a test can kill the running process, to prove crash safety.

``ALIGNMENT_KILL_AT=<point>`` in the environment makes the process SIGKILL itself when it
reaches that point: no ``finally`` block, no atexit handler, no flush runs, exactly as when the
machine loses power or the OOM killer strikes. Unset (always, outside tests), a point costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "ALIGNMENT_KILL_AT"


def point(name: str) -> None:
    """Die here, at once, if the environment asks for it."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
