"""Run a CLI stage in a child process, so the orchestrating process never loads a model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from alignment.errors import AlignmentError


def run_cli_stage(args: list[str], result_file: Path) -> dict:
    """Run ``alignment <args>``; return the JSON it wrote to ``result_file``."""
    cmd = [sys.executable, "-m", "alignment", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise AlignmentError(f"stage {' '.join(args[:2])} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(result_file.read_text())
