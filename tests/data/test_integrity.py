"""A version is recorded only when its files read back as ingest wrote and counted them; one
run records at a time and says so when it waits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from alignment.data.integrity import verify_versions
from alignment.data.version import data_repo_lock, list_versions, version_dataset
from alignment.errors import VersioningError
from alignment.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


def _staged(folder: Path, prompts: list[str]) -> Path:
    """Staged files as ingest writes them: the report counts rows and records each md5."""
    from alignment.data.integrity import file_md5

    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": prompts, "prompt": prompts}).to_parquet(folder / "accepted.parquet")
    pd.DataFrame({"row": [7], "raw": ["{"]}).to_parquet(folder / "rejected.parquet")
    outputs = {
        name: {"rows": rows, "md5": file_md5(folder / name)}
        for name, rows in (("accepted.parquet", len(prompts)), ("rejected.parquet", 1))
    }
    report = {"accepted": len(prompts), "rejected": 1, "outputs": outputs}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def test_a_staged_file_changed_after_ingest_is_not_recorded(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    staged = _staged(tmp_path / "in", ["a", "b", "c"])
    # another writer replaces the file after validation counted it (same row count even)
    pd.DataFrame({"id": ["x", "y", "z"], "prompt": ["x", "y", "z"]}).to_parquet(
        staged / "accepted.parquet"
    )
    with pytest.raises(VersioningError, match="changed after ingest wrote it"):
        version_dataset(ws, "prefs", staged)
    assert list_versions(ws, "prefs") == []


def test_a_staged_file_that_is_not_whole_parquet_is_not_recorded(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    staged = _staged(tmp_path / "in", ["a", "b"])
    whole = (staged / "accepted.parquet").read_bytes()
    (staged / "accepted.parquet").write_bytes(whole + b"AR1")  # two writers interleaved
    with pytest.raises(VersioningError, match=r"accepted.parquet: not a readable Parquet file"):
        version_dataset(ws, "prefs", staged)
    assert list_versions(ws, "prefs") == []


def test_row_counts_must_equal_what_validation_counted(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    staged = _staged(tmp_path / "in", ["a", "b"])
    report = json.loads((staged / "report.json").read_text())
    report["accepted"] = 5
    (staged / "report.json").write_text(json.dumps(report))
    with pytest.raises(VersioningError, match="has 2 rows but validation counted 5"):
        version_dataset(ws, "prefs", staged)
    good = version_dataset(ws, "prefs", _staged(tmp_path / "in2", ["a", "b"]))
    (check,) = verify_versions(ws, "prefs")
    assert check.ok and check.id == good.id and (check.accepted, check.rejected) == (2, 1)


def test_a_run_waiting_for_the_data_repository_says_who_holds_it(tmp_path):
    ws_root = tmp_path / "ws"
    ws = Workspace(ws_root).ensure()
    raw = tmp_path / "p.jsonl"
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "chosen": [{"role": "assistant", "content": f"Answer {i}" + "!" * (i % 3)}],
            "rejected": [{"role": "assistant", "content": f"No {i}" + "?" * (i % 2 * 5)}],
        }
        for i in range(12)
    ]
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with data_repo_lock(ws):
        proc = subprocess.Popen(
            [sys.executable, "-m", "alignment", "data", "ingest", "-i", str(raw),
             "--workspace", str(ws_root), "--version"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        holder = (ws_root / "locks" / "data-repo.holder").read_text()
        # the run reads and validates, then waits: give it time to reach the lock
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            staged = list((ws_root / "staging").glob("*/report.json"))
            if staged:
                break
            time.sleep(0.2)
        time.sleep(2)
        assert proc.poll() is None, "the run did not wait for the lock"
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert f"waiting for the data repository lock {ws_root / 'locks' / 'data-repo.lock'}" in stderr
    assert holder.strip() in stderr
    assert len(list_versions(ws, "preferences")) == 1


def test_a_damaged_earlier_version_is_named_when_a_later_ingest_reads_it(tmp_path):
    from alignment.data.quality.history import earlier_accepted

    ws = Workspace(tmp_path / "ws").ensure()
    version = version_dataset(ws, "prefs", _staged(tmp_path / "in", ["a", "b"]))
    cached = ws.data_repo / ".dvc" / "cache" / "files" / "md5" / version.id[:2] / version.id[2:]
    cached.chmod(0o644)
    cached.write_bytes(b"PAR1" + b"\0" * 16 + b"PAR1")
    with pytest.raises(
        VersioningError, match=rf"(?s){version.id} of 'prefs'.*alignment data verify"
    ):
        list(earlier_accepted(ws, "prefs"))
