"""Small helpers shared by the data tests (imported by name; no __init__ in tests/)."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo_preferences.jsonl"


def conv(prompt: str, chosen: str, rejected: str, **extra) -> dict:
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        **extra,
    }


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_cli(
    *args: str,
    ws: Path,
    dataset: str = "prefs",
    check: bool = True,
    env: dict | None = None,
    timeout: int = 300,
):
    """``python -m alignment ARGS`` against workspace ``ws``, as a user runs it."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    where = ("--workspace", str(ws), "--set", f"ingest.dataset={dataset}")
    proc = subprocess.run(
        [sys.executable, "-m", "alignment", *args, *where],
        capture_output=True,
        text=True,
        env={**(os.environ if env is None else env), "PYTHONPATH": str(root)},
        cwd=root,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc
