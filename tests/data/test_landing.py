"""Which landing files are taken: settled, not temporary, covered by a marker when one is set."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from alignment.data.landing import (
    LandingFile,
    changed_since_versioned,
    landing_file_state,
    select_landing,
    snapshot,
)
from alignment.errors import LandingFileChanged, ManifestMismatch

LATER = 3600.0  # seconds after now: every file written by the test has settled by then


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_is_taken_only_once_it_has_not_been_written_for_settle_seconds(tmp_path):
    landing = tmp_path / "landing"
    batch = _write(landing / "batch.jsonl", '{"prompt": "a"}\n{"prompt": "b", "cho')

    now = select_landing(landing, settle_seconds=60)
    assert now.taken == []
    assert list(now.waiting) == ["batch.jsonl"]
    assert now.waiting_message().startswith("waiting for 1 file still being written")

    later = select_landing(landing, settle_seconds=60, now=time.time() + LATER)
    assert later.waiting == {}
    assert later.taken == [LandingFile(str(batch.absolute()), batch.stat().st_size, _sha(batch))]


def test_temporary_hidden_and_non_data_names_are_ignored(tmp_path):
    landing = tmp_path / "landing"
    names = [
        ".batch.jsonl",
        "batch.jsonl.part",
        "batch.jsonl.tmp",
        "batch.jsonl.crdownload",
        "batch.jsonl~",
        ".upload/inner.jsonl",
        "_staging/inner.jsonl",
        "README.md",
    ]
    for name in [*names, "batch.jsonl"]:
        _write(landing / name, '{"prompt": "a", "chosen": "b", "rejected": "c"}\n')

    selection = select_landing(landing, settle_seconds=0, now=time.time() + LATER)
    assert [Path(f.path).name for f in selection.taken] == ["batch.jsonl"]
    assert sorted(selection.ignored) == sorted(names)
    assert selection.ignored["README.md"].startswith("not a data file")
    assert selection.ignored["batch.jsonl.part"] == "temporary or hidden name"


def test_success_marker_covers_only_the_files_written_before_it(tmp_path):
    landing = tmp_path / "landing"
    _write(landing / "a.jsonl", "{}\n")
    later = time.time() + LATER

    selection = select_landing(landing, 0, marker="success", now=later)
    assert selection.taken == [] and "no _SUCCESS marker" in selection.waiting["a.jsonl"]

    time.sleep(0.05)  # the marker's ctime must be later than a.jsonl's
    _write(landing / "_SUCCESS", "")
    time.sleep(0.05)
    _write(landing / "b.jsonl", "{}\n")
    selection = select_landing(landing, 0, marker="success", now=later)
    assert [Path(f.path).name for f in selection.taken] == ["a.jsonl"]
    assert "written after _SUCCESS" in selection.waiting["b.jsonl"]
    assert "_SUCCESS" not in selection.ignored


def test_a_manifest_takes_its_whole_batch_once_every_hash_matches(tmp_path):
    landing = tmp_path / "landing"
    a = _write(landing / "a.jsonl", "{}\n")
    _write(landing / "extra.jsonl", "{}\n")
    later = time.time() + LATER
    manifest = landing / "SHA256SUMS"

    # the manifest lists a file that has not landed yet: nothing of the batch is taken
    manifest.write_text(f"{_sha(a)}  a.jsonl\n{'0' * 64}  b.jsonl\n")
    selection = select_landing(landing, 0, marker="manifest", now=later)
    assert selection.taken == []
    assert "also lists b.jsonl" in selection.waiting["a.jsonl"]

    b = _write(landing / "b.jsonl", '{"x": 1}\n')
    manifest.write_text(f"{_sha(a)}  a.jsonl\n{_sha(b)} *./b.jsonl\n")
    selection = select_landing(landing, 0, marker="manifest", now=later)
    assert sorted(Path(f.path).name for f in selection.taken) == ["a.jsonl", "b.jsonl"]
    assert selection.waiting == {"extra.jsonl": "not listed in SHA256SUMS"}

    # a manifest still being written is not read yet, though the files themselves have settled
    time.sleep(0.4)
    manifest.write_text(manifest.read_text())
    selection = select_landing(landing, 0.3, marker="manifest")
    assert selection.taken == []
    assert selection.waiting["a.jsonl"] == "SHA256SUMS is still being written"


def test_a_manifest_hash_that_differs_refuses_naming_the_file(tmp_path):
    landing = tmp_path / "landing"
    a = _write(landing / "a.jsonl", "{}\n")
    (landing / "SHA256SUMS").write_text(f"{'f' * 64}  a.jsonl\n")
    with pytest.raises(ManifestMismatch, match=rf"{a}: sha256 {_sha(a)}, SHA256SUMS says f+"):
        select_landing(landing, 0, marker="manifest", now=time.time() + LATER)

    (landing / "SHA256SUMS").write_text(f"{_sha(a)}  a.jsonl\nnot a line\n")
    with pytest.raises(ManifestMismatch, match="SHA256SUMS, line 2"):
        select_landing(landing, 0, marker="manifest", now=time.time() + LATER)


def test_the_fingerprint_follows_names_and_bytes_only(tmp_path):
    landing = tmp_path / "landing"
    _write(landing / "a.jsonl", "{}\n")
    later = time.time() + LATER
    first = select_landing(landing, 0, now=later).fingerprint
    _write(landing / "a.jsonl.part", "half")  # a temporary file does not change the data
    assert select_landing(landing, 0, now=later).fingerprint == first
    _write(landing / "a.jsonl", "{}\n{}\n")
    assert select_landing(landing, 0, now=later).fingerprint != first


def test_a_file_changed_after_it_was_versioned_is_reported_with_both_hashes(tmp_path):
    batch = _write(tmp_path / "batch.jsonl", "{}\n{}\n")
    taken = select_landing(batch, 0, now=time.time() + LATER).taken
    same = {taken[0].path: (taken[0], "a" * 32)}
    assert changed_since_versioned(taken, same) == []
    assert landing_file_state(taken[0].to_dict()) == "unchanged"

    old = LandingFile(taken[0].path, 3, "0" * 64)
    [line] = changed_since_versioned(taken, {old.path: (old, "b" * 32)})
    assert line.startswith(f"{batch.absolute()} changed after data version bbbbbbbbbbbb")
    assert f"size 3 -> 6, sha256 000000000000 -> {taken[0].sha256[:12]}" in line
    assert landing_file_state(old.to_dict()) == "changed since"
    batch.unlink()
    assert landing_file_state(old.to_dict()) == "gone"


def test_the_snapshot_is_exactly_the_bytes_taken_or_nothing(tmp_path):
    landing = tmp_path / "landing"
    a = _write(landing / "sub" / "a.jsonl", '{"x": 1}\n')
    selection = select_landing(landing, 0, now=time.time() + LATER)
    copy = snapshot(selection, tmp_path / "copy")
    assert (copy / "sub" / "a.jsonl").read_bytes() == a.read_bytes()

    a.write_text('{"x": 1}\n{"x": 2')  # written again after it was hashed
    with pytest.raises(LandingFileChanged, match=str(a)):
        snapshot(selection, tmp_path / "copy2")
    assert not (tmp_path / "copy2").exists()
