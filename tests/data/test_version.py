"""DVC versioning against a real git+DVC repository and a local-folder remote."""

import json
from pathlib import Path

import pandas as pd
import pytest

from alignment.data.version import (
    find_version,
    list_versions,
    materialize,
    read_version_file,
    version_dataset,
)
from alignment.errors import VersioningError
from alignment.workspace import Workspace


def _files(folder: Path, prompts: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": [str(i) for i in range(len(prompts))], "prompt": prompts}).to_parquet(
        folder / "accepted.parquet", index=False
    )
    pd.DataFrame({"row": [99], "reasons": [["empty_prompt"]]}).to_parquet(
        folder / "rejected.parquet", index=False
    )
    (folder / "report.json").write_text(json.dumps({"accepted": len(prompts)}))
    return folder


def test_versions_are_content_addressed_pushed_and_readable_byte_for_byte(tmp_path: Path):
    ws = Workspace(tmp_path / "ws").ensure()
    first = _files(tmp_path / "in1", ["a", "b"])
    v1 = version_dataset(ws, "prefs", first)
    assert v1.created and len(v1.id) == 32
    # the remote (a plain folder) now holds exactly this version's bytes under its md5
    pushed = Path(ws.dvc_remote) / "files" / "md5" / v1.id[:2] / v1.id[2:]
    assert pushed.read_bytes() == (first / "accepted.parquet").read_bytes()

    # the same rows again: no new version, same id
    again = version_dataset(ws, "prefs", _files(tmp_path / "in1b", ["a", "b"]))
    assert not again.created and again.id == v1.id

    v2 = version_dataset(ws, "prefs", _files(tmp_path / "in2", ["a", "b", "c"]))
    assert v2.created and v2.id != v1.id
    assert [v.id for v in list_versions(ws, "prefs")] == [v1.id, v2.id]
    assert find_version(ws, "prefs", v1.id[:8]).tag == v1.tag

    # an old version comes back exactly, even after the working copy moved on
    original = (first / "accepted.parquet").read_bytes()
    assert read_version_file(ws, v1) == original
    out = materialize(ws, v1, tmp_path / "restored" / "accepted.parquet")
    assert out.read_bytes() == original


def test_old_version_is_restored_from_the_remote_when_the_cache_is_gone(tmp_path: Path):
    import shutil

    ws = Workspace(tmp_path / "ws").ensure()
    first = _files(tmp_path / "in1", ["x"])
    v1 = version_dataset(ws, "prefs", first)
    version_dataset(ws, "prefs", _files(tmp_path / "in2", ["x", "y"]))
    shutil.rmtree(ws.data_repo / ".dvc" / "cache")
    assert read_version_file(ws, v1) == (first / "accepted.parquet").read_bytes()


def test_dataset_names_never_become_arbitrary_paths(tmp_path: Path):
    ws = Workspace(tmp_path / "ws").ensure()
    with pytest.raises(VersioningError, match="not allowed"):
        version_dataset(ws, "../../etc", _files(tmp_path / "in", ["a"]))
    assert not (tmp_path / "etc").exists()


def test_missing_files_are_named(tmp_path: Path):
    ws = Workspace(tmp_path / "ws").ensure()
    (tmp_path / "empty").mkdir()
    with pytest.raises(VersioningError, match=r"accepted\.parquet"):
        version_dataset(ws, "prefs", tmp_path / "empty")


def test_versioning_prints_no_git_staging_hints(tmp_path: Path, capfd):
    """The platform commits the data repository itself, so DVC's "run git add" hints are noise."""
    ws = Workspace(tmp_path / "ws").ensure()
    version_dataset(ws, "prefs", _files(tmp_path / "in1", ["a", "b"]))
    version_dataset(ws, "prefs", _files(tmp_path / "in2", ["a", "b", "c"]))
    out, err = capfd.readouterr()
    for hint in ("To track the changes with git", "core.autostage"):
        assert hint not in out + err, out + err
    # nothing was left staged or untracked behind the platform's own commits
    assert _git_status(ws.data_repo) == ""


def _git_status(repo: Path) -> str:
    import subprocess

    return subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True
    ).stdout.strip()
