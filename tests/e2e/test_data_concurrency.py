"""Concurrent and killed ingests through the CLI, against real git and DVC: every recorded
version is whole, restores its own rows, and `data verify` says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "AWS_MAX_ATTEMPTS": "1", **extra}


def _start(*args: str, cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "alignment", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
        cwd=cwd,
    )


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alignment", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        cwd=cwd,
        timeout=300,
    )


def _raw(path: Path, tag: str, rows: int) -> Path:
    lines = [
        {
            "prompt": [{"role": "user", "content": f"{tag}: question {i} about roses?"}],
            "chosen": [{"role": "assistant", "content": f"{tag}: a careful answer {i}."}],
            # every third rejected answer is the longer one: no length bias for validation
            "rejected": [
                {"role": "assistant", "content": f"{tag}: no {i}." * (1 + 3 * (i % 3 == 0))}
            ],
        }
        for i in range(rows)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _ingest_args(raw: Path, ws: Path, out: Path, remote: Path | None = None) -> list[str]:
    args = ["data", "ingest", "-i", str(raw), "--workspace", str(ws), "--version"]
    args += ["--set", "ingest.dataset=roses", "--json", str(out)]
    if remote is not None:
        args += ["--set", f"workspace.dvc_remote={remote}"]
    return args


def _restored_prompts(ws: Path, version_id: str, cwd: Path) -> set[str]:
    """The prompts of a version's accepted rows, restored byte for byte through DVC."""
    from alignment.data.version import get_version
    from alignment.workspace import Workspace

    out = get_version(
        Workspace(ws), "roses", version_id, cwd / f"restored-{version_id[:8]}.parquet"
    )
    table = pq.read_table(out, columns=["prompt"]).to_pylist()
    return {row["prompt"][0]["content"] for row in table}


def _verify(ws: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    return _cli("data", "verify", "--workspace", str(ws), *extra, cwd=cwd)


def test_eight_ingests_started_together_record_eight_whole_versions(tmp_path):
    ws = tmp_path / "ws"
    jobs = []
    for k in range(8):
        raw = _raw(tmp_path / f"batch{k}.jsonl", f"batch{k}", 20 + k)
        out = tmp_path / f"out{k}.json"
        jobs.append((k, out, _start(*_ingest_args(raw, ws, out), cwd=tmp_path)))
    ids = {}
    for k, out, proc in jobs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"ingest {k}: {stderr[-2000:]}"
        assert "Traceback" not in stderr
        ids[k] = json.loads(out.read_text())["data_version"]["id"]
    assert len(set(ids.values())) == 8
    # every version restores exactly its own rows
    for k, version_id in ids.items():
        prompts = _restored_prompts(ws, version_id, tmp_path)
        assert prompts == {f"batch{k}: question {i} about roses?" for i in range(20 + k)}
    verify = _verify(ws, tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "8 versions of every dataset checked, 0 with problems" in verify.stdout
    assert verify.stdout.count("ok  ") == 8


def test_runs_killed_at_each_point_leave_no_version_or_a_whole_one(tmp_path):
    """Each killed run dies at one point; the next run cleans up after it, then dies at the
    next point; after every death, every recorded version is whole."""
    ws = tmp_path / "ws"
    base = _cli(*_ingest_args(_raw(tmp_path / "a.jsonl", "a", 30), ws, tmp_path / "a.json"),
                cwd=tmp_path)  # fmt: skip
    assert base.returncode == 0, base.stderr
    # two Parquet chunks at chunk_rows=1000, so a kill can fall between them
    chunks = ["--set", "ingest.chunk_rows=1000", "--set", "ingest.validate_rows=1000"]

    def ingest(name: str, **env: str) -> subprocess.CompletedProcess:
        raw = _raw(tmp_path / f"{name}.jsonl", name, 2500)
        return _cli(*_ingest_args(raw, ws, tmp_path / f"{name}.json"), *chunks, cwd=tmp_path, **env)

    expect_versions = 1
    # (where the run dies, versions whole after its death, what the next run says about it)
    points = [
        ("parquet-write", 0, None),  # half a Parquet file in its staging folder
        ("data-repo-copy", 0, "rolled back the unfinished version"),
        ("dvc-add", 0, "rolled back the unfinished version"),
        ("git-commit", 0, "completed version"),  # committed, untagged: not a version yet
        ("git-tag", 2, None),  # the commit above completed by this run, and its own version
    ]
    for k, (point, added, _) in enumerate(points):
        killed = ingest(f"b{k}", ALIGNMENT_KILL_AT=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        said = points[k - 1][2] if k else None
        assert said is None or said in killed.stderr, (point, killed.stderr[-2000:])
        expect_versions += added
        # the push may be missing after a death: check the local cache here
        verify = _verify(ws, tmp_path, "--no-remote")
        assert verify.returncode == 0, (point, verify.stdout + verify.stderr)
        assert verify.stdout.count("ok  ") == expect_versions, (point, verify.stdout)

    # the next run records its own version, removes the dead runs' half-written files and
    # pushes every version, the ones recorded by runs that died before pushing too
    final = ingest("b0")
    assert final.returncode == 0, final.stderr
    assert not list((ws / "staging").glob("*/.*.tmp")), "half-written files were left"
    verify = _verify(ws, tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "4 versions of every dataset checked, 0 with problems" in verify.stdout
    ids = [line.split()[2] for line in verify.stdout.splitlines() if line.startswith("ok")]
    restored = {min(_restored_prompts(ws, version_id, tmp_path)) for version_id in ids}
    assert restored == {f"{name}: question 0 about roses?" for name in ("a", "b0", "b3", "b4")}


def test_data_verify_finds_a_corrupt_cache_object_and_a_missing_remote_object(tmp_path):
    ws = tmp_path / "ws"
    done = _cli(*_ingest_args(_raw(tmp_path / "a.jsonl", "a", 25), ws, tmp_path / "a.json"),
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    version_id = json.loads((tmp_path / "a.json").read_text())["data_version"]["id"]
    cached = ws / "data-repo" / ".dvc" / "cache" / "files" / "md5" / version_id[:2] / version_id[2:]
    pushed = ws / "dvc-remote" / "files" / "md5" / version_id[:2] / version_id[2:]
    assert cached.is_file() and pushed.is_file()
    # a cache object cut short (a disk fault, a copy killed half-way)
    os.chmod(cached, 0o644)
    cached.write_bytes(cached.read_bytes()[:-40])
    pushed.unlink()
    verify = _verify(ws, tmp_path, "roses")
    assert verify.returncode == 1
    assert "FAIL roses" in verify.stdout
    assert "cache: accepted.parquet hashes to" in verify.stdout
    assert f"remote: accepted.parquet ({version_id}) is missing" in verify.stdout
    assert "1 versions of roses checked, 1 with problems" in verify.stdout


def test_two_workspaces_push_the_same_data_to_one_remote_at_once(tmp_path):
    remote = tmp_path / "shared-remote"
    raw = _raw(tmp_path / "same.jsonl", "same", 200)
    jobs = []
    for k in range(2):
        args = _ingest_args(raw, tmp_path / f"ws{k}", tmp_path / f"o{k}.json", remote)
        jobs.append(_start(*args, cwd=tmp_path))
    for proc in jobs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-2000:]
    ids = {json.loads((tmp_path / f"o{k}.json").read_text())["data_version"]["id"] for k in (0, 1)}
    assert len(ids) == 1
    for k in range(2):
        ws = tmp_path / f"ws{k}"
        verify = _cli("data", "verify", "--workspace", str(ws),
                      "--set", f"workspace.dvc_remote={remote}", cwd=tmp_path)  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "(cache+remote)" in verify.stdout
