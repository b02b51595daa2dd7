"""`alignment data ...` through real subprocesses against a real git+DVC repo in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from data_helpers import conv, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, ws: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "alignment",
            *args,
            "--workspace",
            str(ws),
            "--set",
            "ingest.dataset=prefs",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_ingest_version_show_diff_get(tmp_path):
    ws = tmp_path / "ws"
    rows = [conv(f"Question {i}?", f"Answer {i}.", f"Wrong {i}.") for i in range(12)]
    first = write_jsonl(tmp_path / "v1.jsonl", [*rows[:10], "broken"])
    second = write_jsonl(tmp_path / "v2.jsonl", [*rows[2:], "broken"])
    loose = ["--set", "validation.max_rejected_fraction=0.5"]
    out1 = tmp_path / "v1.json"
    _cli("data", "ingest", "-i", str(first), "--version", "--json", str(out1), *loose, ws=ws)
    v1 = json.loads(out1.read_text())["data_version"]["id"]
    # the same data again: no new version
    again = _cli("data", "ingest", "-i", str(first), "--version", *loose, ws=ws)
    assert "already versioned" in again.stdout
    out2 = tmp_path / "v2.json"
    _cli("data", "ingest", "-i", str(second), "--version", "--json", str(out2), *loose, ws=ws)
    v2 = json.loads(out2.read_text())["data_version"]["id"]
    assert v1 != v2

    listed = _cli("data", "versions", ws=ws).stdout.splitlines()
    assert [line.split()[0] for line in listed] == [v1, v2]

    shown = _cli("data", "show", v1[:8], "--json", str(tmp_path / "show.json"), ws=ws)
    assert v1 in shown.stdout and "10 accepted, 1 rejected" in shown.stdout
    info = json.loads((tmp_path / "show.json").read_text())
    assert info["malformed_reasons"] == {"not_an_object": 1}

    diff = _cli("data", "diff", v1, v2, "--json", str(tmp_path / "diff.json"), ws=ws)
    assert "+2 rows, -2 rows, 8 unchanged" in diff.stdout
    side = json.loads((tmp_path / "diff.json").read_text())["side_by_side"]
    assert side["accepted"] == [10, 10] and "mean_chosen_chars" in side

    restored = tmp_path / "restored.parquet"
    _cli("data", "get", v1[:10], "--out", str(restored), ws=ws)
    staged = json.loads(out1.read_text())["accepted_path"]
    assert restored.read_bytes() == Path(staged).read_bytes()
    report = tmp_path / "r.json"
    _cli("data", "get", v2, "--file", "report.json", "--out", str(report), ws=ws)
    assert json.loads(report.read_text())["accepted"] == 10

    missing = _cli("data", "show", "deadbeef", ws=ws, check=False)
    assert missing.returncode == 2 and "no version 'deadbeef'" in missing.stderr


def test_print_commands_leaves_the_git_record_to_the_user(tmp_path):
    ws = tmp_path / "ws"
    rows = [conv(f"Question {i}?", f"Answer {i}.", f"Wrong {i}.") for i in range(8)]
    raw = write_jsonl(tmp_path / "prefs.jsonl", rows)
    out = tmp_path / "out.json"
    shown = _cli("data", "ingest", "-i", str(raw), "--print-commands", "--json", str(out), ws=ws)
    version = json.loads(out.read_text())["data_version"]
    commands = version["commands"]
    assert "record it with:" in shown.stdout and all(c in shown.stdout for c in commands)
    repo = ws / "data-repo"
    assert (
        subprocess.run(["git", "-C", str(repo), "tag"], capture_output=True, text=True).stdout == ""
    )
    assert _cli("data", "versions", ws=ws).stdout.strip() == "no versions recorded yet"
    # the data is in DVC's cache already; the printed commands record and push it
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    subprocess.run(["bash", "-ec", "\n".join(commands)], env=env, check=True, capture_output=True)
    listed = _cli("data", "versions", ws=ws).stdout.split()
    assert listed[0] == version["id"] and version["tag"] in listed
    md5 = version["id"]
    assert (ws / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]).is_file()


def test_ingest_takes_the_file_as_an_argument(tmp_path):
    ws = tmp_path / "ws"
    rows = [conv(f"Question {i}?", f"Answer {i}.", f"Wrong {i}.") for i in range(5)]
    raw = write_jsonl(tmp_path / "prefs.jsonl", rows)
    out = tmp_path / "out.json"
    shown = _cli("data", "ingest", str(raw), "--json", str(out), ws=ws)
    assert json.loads(out.read_text())["accepted"] == 5
    assert f"source      {raw}" in shown.stdout
    other = write_jsonl(tmp_path / "other.jsonl", rows[:2])
    both = _cli("data", "ingest", str(raw), "--input", str(other), ws=ws, check=False)
    assert both.returncode == 2 and "two inputs given" in both.stderr
    none = _cli("data", "ingest", ws=ws, check=False)
    assert none.returncode == 2 and "no input: pass FILE" in none.stderr
