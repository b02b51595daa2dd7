"""Faults at the data end, through the CLI against a real git+DVC repository: a DVC remote that
cannot be reached, and a corrupt or malicious data file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_MAX_ATTEMPTS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "alignment", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def _pair(i: int) -> dict:
    return {
        "prompt": [{"role": "user", "content": f"Question number {i} about the garden?"}],
        "chosen": [{"role": "assistant", "content": f"A careful answer, number {i}."}],
        "rejected": [{"role": "assistant", "content": f"No {i}."}],
    }


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_unreachable_dvc_remote_fails_clearly_keeps_the_data_and_a_rerun_pushes(tmp_path):
    raw = tmp_path / "prefs.jsonl"
    raw.write_text("".join(json.dumps(_pair(i)) + "\n" for i in range(12)))
    # A remote below a plain file can never be created: the remote is unreachable
    blocker = tmp_path / "mnt"
    blocker.write_text("not a folder")
    remote = blocker / "dvc-remote"
    ws, out = tmp_path / "ws", tmp_path / "out.json"
    args = ("data", "ingest", "-i", str(raw), "--workspace", str(ws), "--version")
    args += ("--set", f"workspace.dvc_remote={remote}", "--json", str(out))

    failed = _cli(*args, cwd=tmp_path)
    assert failed.returncode != 0
    assert "dvc push to the remote failed" in failed.stderr
    assert "rerun once the remote is reachable" in failed.stderr
    assert "Traceback" not in failed.stderr
    # the accepted rows are versioned locally: tagged in git, bytes in the DVC cache
    repo = ws / "data-repo"
    tags = subprocess.run(
        ["git", "tag"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(tags) == 1 and tags[0].startswith("preferences-")
    dvc_file = repo / "datasets" / "preferences" / "accepted.parquet.dvc"
    md5 = next(
        line.split(":")[1].strip() for line in dvc_file.read_text().splitlines() if "md5" in line
    )
    cached = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    assert cached.is_file()
    assert pq.read_table(cached).num_rows == 12

    # the remote comes back; the same command pushes what was kept and makes no new version
    blocker.unlink()
    rerun = _cli(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "already versioned" in rerun.stdout
    assert (remote / "files" / "md5" / md5[:2] / md5[2:]).read_bytes() == cached.read_bytes()
    version = json.loads(out.read_text())["data_version"]
    assert version["id"] == md5 and version["tag"] == tags[0]


def test_corrupt_and_malicious_rows_are_quarantined_and_nothing_leaves_the_workspace(tmp_path):
    rows = [json.dumps(_pair(i)) for i in range(20)]
    rows.append('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + ', "chosen": "a", "rejected": "b"}')
    rows.append(
        json.dumps({**_pair(20), "chosen": [{"role": "assistant", "content": "x" * 3_000_000}]})
    )
    evil = "../../../evil"
    rows.append(json.dumps({**_pair(21), "id": evil, "source": evil, "meta": {"file": evil}}))
    raw = tmp_path / "inbox" / "prefs.jsonl"
    raw.parent.mkdir()
    raw.write_text("\n".join(rows) + "\n")
    before_raw = raw.read_bytes()
    cwd = tmp_path / "a" / "b" / "c"  # '../../../evil' from here would land in tmp_path
    cwd.mkdir(parents=True)
    ws, out = tmp_path / "ws", tmp_path / "out"
    outside_before = _tree(tmp_path) - {p for p in _tree(tmp_path) if p.startswith(("ws", "out"))}

    done = _cli(
        "data", "ingest", "-i", str(raw), "--workspace", str(ws), "--out", str(out),
        "--version", "--set", "validation.max_rejected_fraction=0.5",
        cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    by_line = {r["row"]: r for r in rejected}
    assert set(by_line) == {20, 21}  # 0-based lines: the nested one and the huge one
    assert "too_deep" in json.dumps(by_line[20]["reasons"])
    assert "too_long" in json.dumps(by_line[21]["reasons"])
    accepted = pq.read_table(out / "accepted.parquet").to_pylist()
    assert len(accepted) + len(rejected) == len(rows)
    # fields named like paths stay data: the id is the platform's content hash, not the file's
    assert all(r["id"] != evil and len(r["id"]) == 16 for r in accepted)
    assert {r["source"] for r in accepted} == {"prefs.jsonl"}
    assert raw.read_bytes() == before_raw
    outside_after = _tree(tmp_path) - {p for p in _tree(tmp_path) if p.startswith(("ws", "out"))}
    assert outside_after == outside_before
    assert not (tmp_path / "evil").exists()

    # a dataset name is a folder and a git tag: a path in it is refused before anything is written
    refused = _cli(
        "data", "ingest", "-i", str(raw), "--workspace", str(tmp_path / "ws2"),
        "--version", "--set", f"ingest.dataset={evil}",
        cwd=cwd,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "dataset name" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "evil").exists() and not (tmp_path / "ws2" / "data-repo").exists()
