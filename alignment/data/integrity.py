"""A data version is recorded only when its files read back as what validation counted.

Three guards, used by ``version.py`` and ``alignment data verify``:

- ``check_staged``: before anything is recorded, the staged files are whole Parquet files
  whose row counts and md5 equal what ingest wrote and counted (``report.json``'s
  ``outputs``). A file clobbered or cut after validation is refused here.
- a journal in the data repository's ``.git`` folder, written under the repository lock
  before a version is recorded and removed when it is complete: a run killed on the way
  (SIGKILL, power loss) leaves it behind, and the next run either completes that version
  (committed, verified, only the tag missing) or rolls the repository back to its last commit.
- ``verify_versions``: every recorded version's objects in the DVC cache and on the remote
  hash to the recorded id, parse as Parquet, and count the rows their report says.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alignment.errors import VersioningError

JOURNAL = "alignment-versioning.json"
PARQUET_FILES = ("accepted.parquet", "rejected.parquet")


def file_md5(path: Path) -> str:
    """md5 of a file's bytes (DVC's content id), read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parquet_rows(source: Path | bytes) -> int:
    """Rows in a Parquet file, from its footer; raises ValueError when it is not whole Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        return pq.ParquetFile(handle).metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"not a readable Parquet file ({exc})") from exc


@dataclass(frozen=True)
class Staged:
    """What the staged files of one ingest must be: the id, and rows per Parquet file."""

    version_id: str
    rows: dict[str, int]


def check_staged(files_dir: Path) -> Staged:
    """Read the staged files back; raise VersioningError naming the file unless they match."""
    files_dir = Path(files_dir)
    try:
        report = json.loads((files_dir / "report.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VersioningError(f"{files_dir / 'report.json'} cannot be read: {exc}") from exc
    counted = {
        "accepted.parquet": report.get("accepted"),
        "rejected.parquet": report.get("rejected"),
    }
    outputs = report.get("outputs") or {}
    rows: dict[str, int] = {}
    md5s: dict[str, str] = {}
    for name in PARQUET_FILES:
        path = files_dir / name
        try:
            rows[name] = parquet_rows(path)
        except ValueError as exc:
            raise VersioningError(f"{path}: {exc}; nothing was recorded") from exc
        if counted[name] is not None and rows[name] != counted[name]:
            raise VersioningError(
                f"{path} has {rows[name]} rows but validation counted {counted[name]}; "
                "nothing was recorded"
            )
        md5s[name] = file_md5(path)
        written = outputs.get(name, {}).get("md5")
        if written is not None and written != md5s[name]:
            raise VersioningError(
                f"{path} changed after ingest wrote it (md5 {md5s[name]}, written {written}); "
                "nothing was recorded"
            )
    return Staged(md5s["accepted.parquet"], rows)


# --- the journal: crash recovery ------------------------------------------------------------


def _git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise VersioningError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def begin(repo: Path, dataset: str, version_id: str, tag: str, message: str) -> None:
    """Record, before the first change to the repository, which version is being made."""
    from alignment.workspace import atomic_write_text

    entry = {"dataset": dataset, "id": version_id, "tag": tag, "message": message}
    atomic_write_text(repo / ".git" / JOURNAL, json.dumps(entry) + "\n")


def end(repo: Path) -> None:
    """The version is complete (or was handed to the user to commit): forget the journal."""
    (repo / ".git" / JOURNAL).unlink(missing_ok=True)


def recover(repo: Path, verify_commit: Callable[[str, str], None], say=print) -> str | None:
    """Finish or undo what a dead run left in ``repo``; call only while holding its lock.

    ``verify_commit(dataset, version_id)`` checks the version's files as committed at HEAD and
    raises VersioningError when they do not hold. Returns what was done, or None.
    """
    git_dir = repo / ".git"
    # no git process runs in this repository while we hold its lock: the index lock is stale
    (git_dir / "index.lock").unlink(missing_ok=True)
    for leftover in (repo / "datasets").glob("*/.*.tmp"):
        leftover.unlink(missing_ok=True)
    journal = git_dir / JOURNAL
    if not journal.is_file():
        return None
    try:
        entry = json.loads(journal.read_text())
    except (OSError, json.JSONDecodeError):
        entry = {}
    done: str
    tagged = entry.get("tag") and _git(repo, "tag", "--list", entry["tag"])
    head_message = _git(repo, "log", "-1", "--format=%s", check=False)
    if tagged:
        done = f"version {entry['id']} was complete; cleared its journal"
    elif entry.get("message") and head_message == entry["message"]:
        try:
            verify_commit(entry["dataset"], entry["id"])
        except VersioningError as exc:
            _git(repo, "reset", "-q", "--hard", "HEAD~1")
            done = f"dropped the untagged commit of version {entry['id']}: {exc}"
        else:
            _git(repo, "tag", entry["tag"])
            done = f"completed version {entry['id']} (committed, verified; tagged {entry['tag']})"
    else:
        _git(repo, "reset", "-q", "--hard", "HEAD")
        if entry.get("dataset"):
            _git(repo, "clean", "-q", "-f", "-d", "--", f"datasets/{entry['dataset']}")
        done = f"rolled back the unfinished version {entry.get('id', '?')} to the last commit"
    journal.unlink()
    say(f"data repository {repo}: {done}")
    return done


# --- verification of recorded versions -----------------------------------------------------


@dataclass
class VersionCheck:
    """One recorded version and what did not hold (``problems`` empty: all is well)."""

    dataset: str
    id: str
    tag: str
    accepted: int | None = None
    rejected: int | None = None
    remote_checked: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        state = "ok  " if self.ok else "FAIL"
        counts = f"{self.accepted} accepted / {self.rejected} rejected"
        where = "cache+remote" if self.remote_checked else "cache"
        head = f"{state} {self.dataset:16s} {self.id[:12]}  {self.tag:30s} {counts} ({where})"
        return head + "".join(f"\n       - {p}" for p in self.problems)


def _dvc_outs(repo: Path, tag: str, dataset: str) -> dict[str, str]:
    """file name -> md5 recorded in the ``.dvc`` files at ``tag``."""
    import yaml

    from alignment.data.version import FILES

    md5s = {}
    for name in FILES:
        text = _git(repo, "show", f"{tag}:datasets/{dataset}/{name}.dvc")
        md5s[name] = yaml.safe_load(text)["outs"][0]["md5"]
    return md5s


def _read(fs, path: str) -> bytes | None:
    try:
        with fs.open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def check_objects(odb, md5s: dict[str, str], where: str, check: VersionCheck) -> None:
    """Each object of ``md5s`` in ``odb`` (a DVC object store) is there, hashes to its id,
    parses, and counts the rows its report counted; what does not hold goes to ``check``."""
    report = None
    for name, md5 in md5s.items():
        data = _read(odb.fs, odb.oid_to_path(md5))
        if data is None:
            check.problems.append(f"{where}: {name} ({md5}) is missing")
            continue
        got = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if got != md5:
            check.problems.append(f"{where}: {name} hashes to {got}, recorded {md5}")
            continue
        if name == "report.json":
            try:
                report = json.loads(data)
            except ValueError as exc:
                check.problems.append(f"{where}: report.json is not JSON ({exc})")
            continue
        try:
            rows = parquet_rows(data)
        except ValueError as exc:
            check.problems.append(f"{where}: {name}: {exc}")
            continue
        setattr(check, name.split(".")[0], rows)
    if report is not None:
        for name in PARQUET_FILES:
            key = name.split(".")[0]
            got = getattr(check, key)
            if got is not None and report.get(key) is not None and got != report[key]:
                check.problems.append(
                    f"{where}: {name} has {got} rows, its report counted {report[key]}"
                )


def check_version(dvc, repo: Path, dataset: str, version_id: str, tag: str, remote_odb=None):
    """Check one version (at git ref ``tag``) against its cache and remote objects."""
    check = VersionCheck(dataset, version_id, tag, remote_checked=remote_odb is not None)
    try:
        md5s = _dvc_outs(repo, tag, dataset)
    except (VersioningError, KeyError, TypeError) as exc:
        check.problems.append(f".dvc files unreadable at {tag}: {exc}")
        return check
    if md5s["accepted.parquet"] != version_id:
        check.problems.append(
            f"accepted.parquet.dvc records {md5s['accepted.parquet']}, the version id is {version_id}"
        )
    check_objects(dvc.cache.local, md5s, "cache", check)
    if remote_odb is not None:
        check_objects(remote_odb, md5s, "remote", check)
    return check


def verify_versions(
    ws, dataset: str | None = None, version_id: str | None = None, remote: bool = True
) -> list[VersionCheck]:
    """Check every recorded version (of one dataset, or one version); one VersionCheck each."""
    from dvc.repo import Repo

    from alignment.data.version import list_datasets, list_versions

    repo = ws.data_repo
    if not (repo / ".git").exists():
        return []
    datasets = [dataset] if dataset else list_datasets(ws)
    dvc = Repo(str(repo))
    try:
        remote_odb = None
        remote_problem = None
        if remote:
            try:
                remote_odb = dvc.cloud.get_remote_odb(command="verify")
            except Exception as exc:  # DVC raises many types; all mean "no usable remote"
                remote_problem = f"remote: not usable ({exc})"
        checks = []
        for name in datasets:
            for version in list_versions(ws, name):
                if version_id and not (
                    version.id.startswith(version_id) or version.tag == version_id
                ):
                    continue
                check = check_version(dvc, repo, name, version.id, version.tag, remote_odb)
                if remote_problem:
                    check.problems.append(remote_problem)
                checks.append(check)
        return checks
    finally:
        dvc.close()
