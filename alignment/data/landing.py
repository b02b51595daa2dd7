"""Take from a landing folder only the files that have finished arriving.

Upload tools and people copy files slowly and schedules fire anyway, so a landing file is taken
only once it has settled: not written to for ``settle_seconds``, not named like a temporary
file, and, when a marker is configured, covered by it: an ``_SUCCESS`` file written after it,
or a manifest in ``sha256sum``'s format that lists it with a matching sha256.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from alignment.data.formats import input_files
from alignment.errors import LandingFileChanged, ManifestMismatch
from alignment.workspace import Workspace

SUCCESS_MARKER = "_SUCCESS"
# what browsers, rsync, editors and upload tools name a file while they still write it
TEMPORARY_SUFFIXES = (
    ".tmp",
    ".temp",
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".filepart",
    ".swp",
)
MANIFEST_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")

Marker = Literal["none", "success", "manifest"]


@dataclass(frozen=True)
class LandingFile:
    """One landing file as it was taken: where, how many bytes, and their sha256."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LandingSelection:
    """The files of a landing place that may be ingested now, and why the others may not."""

    root: Path
    taken: list[LandingFile] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # path -> why it is not taken yet
    ignored: dict[str, str] = field(default_factory=dict)  # path -> why it is never taken

    @property
    def fingerprint(self) -> str:
        """A hash of the taken files' names and contents: equal for the same data."""
        digest = hashlib.sha256()
        for file in sorted(self.taken, key=lambda f: f.path):
            digest.update(f"{file.path}\0{file.sha256}\n".encode())
        return digest.hexdigest()

    def waiting_message(self) -> str:
        """'waiting for 1 file still being written (a.jsonl: ...)', or '' when none waits."""
        if not self.waiting:
            return ""
        count = len(self.waiting)
        what = "1 file" if count == 1 else f"{count} files"
        reasons = "; ".join(f"{Path(p).name}: {why}" for p, why in sorted(self.waiting.items()))
        return f"waiting for {what} still being written ({reasons})"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _changed_at(st: os.stat_result) -> float:
    # ctime too: a copy that sets the source's old mtime still moves ctime, which no tool can set
    return max(st.st_mtime, st.st_ctime)


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def temporary_name(rel: str) -> bool:
    """Whether a path (relative to the landing folder) is named like a file still being written."""
    parts = Path(rel).parts
    name = parts[-1].lower()
    hidden = any(part.startswith((".", "_")) for part in parts)
    return hidden or name.endswith("~") or name.endswith(TEMPORARY_SUFFIXES)


def read_manifest(path: Path) -> dict[str, str]:
    """A ``sha256sum`` manifest as {relative path: sha256}; a malformed line names its number."""
    entries: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = MANIFEST_LINE.match(line)
        if match is None:
            raise ManifestMismatch(
                f"{path}, line {lineno}: not '<sha256>  <file>' as sha256sum writes it: {line!r}"
            )
        name = match.group(2).removeprefix("./")
        entries[name] = match.group(1).lower()
    return entries


def select_landing(
    root: Path,
    settle_seconds: float,
    marker: Marker = "none",
    manifest: str = "SHA256SUMS",
    now: float | None = None,
) -> LandingSelection:
    """The landing files that have settled (and that the marker covers), hashed as taken.

    Raises ManifestMismatch when a settled file's sha256 differs from the manifest's.
    """
    root = Path(root)
    now = time.time() if now is None else now
    base = root if root.is_dir() else root.parent
    selection = LandingSelection(root)
    markers = {SUCCESS_MARKER, manifest}
    data_files = {source for _, source in input_files(root)}
    candidates = (
        sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        if root.is_dir()
        else [root.name]
    )
    settled: dict[str, os.stat_result] = {}
    for rel in candidates:
        if rel in markers:
            continue
        if temporary_name(rel):
            selection.ignored[rel] = "temporary or hidden name"
        elif rel not in data_files:
            selection.ignored[rel] = "not a data file (unsupported type)"
        else:
            try:
                st = (base / rel).stat()
            except FileNotFoundError:
                continue  # moved away since the listing: not there
            age = now - _changed_at(st)
            if age < settle_seconds:
                selection.waiting[rel] = (
                    f"written {max(age, 0):.0f} s ago, taken once unchanged for {settle_seconds:g} s"
                )
            else:
                settled[rel] = st

    listed: dict[str, str] = {}
    if marker == "success":
        settled = _covered_by_success(base, settled, selection)
    elif marker == "manifest":
        settled, listed = _covered_by_manifest(
            base / manifest, settled, selection, now, settle_seconds
        )

    wrong = []
    for rel, st in settled.items():
        try:
            digest = sha256_file(base / rel)
            after = (base / rel).stat()
        except FileNotFoundError:
            continue
        if _stamp(after) != _stamp(st):
            selection.waiting[rel] = "written to while it was being read"
            continue
        if rel in listed and digest != listed[rel]:
            wrong.append(f"{base / rel}: sha256 {digest}, {manifest} says {listed[rel]}")
        selection.taken.append(LandingFile(_landing_path(base, rel), after.st_size, digest))
    if wrong:
        raise ManifestMismatch(
            f"{base / manifest} does not match the landing files, refusing them: "
            f"{'; '.join(wrong)}. Copy the file again, or write the manifest from the files "
            "that landed."
        )
    return selection


def _landing_path(base: Path, rel: str) -> str:
    return str((base / rel).absolute())


def _covered_by_success(
    base: Path,
    settled: dict[str, os.stat_result],
    selection: LandingSelection,
) -> dict[str, os.stat_result]:
    path = base / SUCCESS_MARKER
    if not path.is_file():
        selection.waiting.update({rel: f"no {SUCCESS_MARKER} marker yet" for rel in settled})
        return {}
    written = _changed_at(path.stat())
    covered = {}
    for rel, st in settled.items():
        if _changed_at(st) > written:
            selection.waiting[rel] = f"written after {SUCCESS_MARKER}; waiting for a newer one"
        else:
            covered[rel] = st
    return covered


def _covered_by_manifest(
    path: Path,
    settled: dict[str, os.stat_result],
    selection: LandingSelection,
    now: float,
    settle_seconds: float,
) -> tuple[dict[str, os.stat_result], dict[str, str]]:
    """The settled files of the manifest's batch, once all of it has settled; and its hashes."""
    if not path.is_file():
        selection.waiting.update({rel: f"no manifest {path.name} yet" for rel in settled})
        return {}, {}
    if now - _changed_at(path.stat()) < settle_seconds:
        selection.waiting.update({rel: f"{path.name} is still being written" for rel in settled})
        return {}, {}
    listed = read_manifest(path)
    covered = {rel: st for rel, st in settled.items() if rel in listed}
    for rel in settled.keys() - covered.keys():
        selection.waiting[rel] = f"not listed in {path.name}"
    # a manifest names a batch: none of it is taken until all of it is there and settled
    pending = sorted(rel for rel in listed if rel not in settled and rel not in selection.ignored)
    if pending:
        for rel in covered:
            selection.waiting[rel] = f"{path.name} also lists {', '.join(pending)}, not settled yet"
        return {}, {}
    return covered, listed


def changed_since_versioned(
    taken: list[LandingFile], recorded: dict[str, tuple[LandingFile, str]]
) -> list[str]:
    """One line per taken file whose bytes differ from those a data version was made from."""
    lines = []
    for file in taken:
        before = recorded.get(file.path)
        if before is not None and before[0].sha256 != file.sha256:
            old, version_id = before
            lines.append(
                f"{file.path} changed after data version {version_id[:12]} was made from it "
                f"(size {old.size} -> {file.size}, sha256 {old.sha256[:12]} -> {file.sha256[:12]})"
            )
    return lines


def refuse_changed(changes: list[str]) -> None:
    """Raise LandingFileChanged naming each changed file and what to do."""
    raise LandingFileChanged(
        "; ".join(changes) + ". Land new data under a new file name (and put the original "
        "back), or set retrain.on_changed=reread to version the new bytes."
    )


def versioned_landing_files(ws: Workspace, dataset: str) -> dict[str, tuple[LandingFile, str]]:
    """Every landing file a version of ``dataset`` recorded: path -> (file, version id), newest."""
    from alignment.data.version import list_versions, version_metadata

    recorded: dict[str, tuple[LandingFile, str]] = {}
    for version in list_versions(ws, dataset):  # oldest first, so the newest record wins
        for entry in version_metadata(ws, version).get("landing_files", []):
            recorded[entry["path"]] = (LandingFile(**entry), version.id)
    return recorded


def snapshot(selection: LandingSelection, dest: Path) -> Path:
    """Copy the taken files into ``dest`` under their landing names; the copy must hash as taken.

    Ingest reads the copy, so the version is made from exactly the bytes that were hashed.
    """
    base = selection.root if selection.root.is_dir() else selection.root.parent
    for file in selection.taken:
        rel = Path(file.path).relative_to(base.absolute())
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(file.path, "rb") as src, open(target, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != file.sha256:
            shutil.rmtree(dest, ignore_errors=True)
            raise LandingFileChanged(
                f"{file.path} was written to after it had settled, while it was being taken; "
                "nothing was versioned: the next run takes it once it settles again"
            )
    return dest


def landing_file_state(record: dict) -> str:
    """Whether a recorded landing file is still there as it was: unchanged, changed or gone."""
    path = Path(record["path"])
    if not path.is_file():
        return "gone"
    same = path.stat().st_size == record["size"] and sha256_file(path) == record["sha256"]
    return "unchanged" if same else "changed since"
