"""Version datasets with DVC in a git+DVC repository of the workspace's own.

A data version is named by its content: the DVC (md5) hash of the accepted-rows file. The
rejected rows and the validation report are versioned beside it, in the same git commit,
and a git tag ``<dataset>-<id[:12]>`` marks the commit so any past version can be read back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from alignment import faults
from alignment.data import integrity
from alignment.errors import VersioningError
from alignment.workspace import Workspace, atomic_write_text

DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FILES = ("accepted.parquet", "rejected.parquet", "report.json")
# how long a run waits for another to finish recording its version before giving up
LOCK_TIMEOUT_SECONDS = 3600.0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DataVersion:
    """One version of a dataset, as recorded in the data repository."""

    id: str
    dataset: str
    tag: str
    git_commit: str
    folder: Path
    created: bool
    remote: str
    # set when the caller asked to record the version itself: the commands that would do it
    commands: tuple[str, ...] = ()

    @property
    def accepted_path(self) -> Path:
        return self.folder / "accepted.parquet"

    @property
    def rejected_path(self) -> Path:
        return self.folder / "rejected.parquet"

    @property
    def report_path(self) -> Path:
        return self.folder / "report.json"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["folder"] = str(self.folder)
        return out


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise VersioningError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def check_dataset_name(name: str) -> str:
    if not DATASET_NAME.match(name):
        raise VersioningError(
            f"dataset name {name!r} is not allowed: use lowercase letters, digits, '-' and '_' "
            "(it becomes a folder and a git tag)"
        )
    return name


def init_data_repo(ws: Workspace) -> Path:
    """Create (once) the git+DVC repository and point its default remote at the workspace's."""
    from dvc.repo import Repo

    repo = ws.data_repo
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        _git(repo, "init", "-q", "-b", "main")
    # every time: a run killed between `git init` and these leaves a repository without them
    _git(repo, "config", "user.name", "alignment")
    _git(repo, "config", "user.email", "alignment@localhost")
    _git(repo, "config", "commit.gpgsign", "false")
    if not (repo / ".dvc").exists():
        Repo.init(str(repo), subdir=False)
    dvc = Repo(str(repo))
    try:
        with dvc.config.edit() as conf:
            conf["remote"]["workspace"] = {"url": ws.dvc_remote}
            conf["core"]["remote"] = "workspace"
            # DVC stages what it adds; without this it prints "run git add" hints to every
            # ingest, though versioning commits those files itself
            conf["core"]["autostage"] = True
    finally:
        dvc.close()
    own = (".dvc/config", ".dvc/.gitignore", ".dvcignore")
    _git(repo, "add", *own)
    # only these files: whatever else is uncommitted belongs to a version (or to its recovery)
    if _git(repo, "status", "--porcelain", "--", *own):
        _git(repo, "commit", "-q", "-m", "Initialise the data repository", "--", *own)
    return repo


def _dvc_md5(dvc_file: Path) -> str:
    meta = yaml.safe_load(dvc_file.read_text())
    return meta["outs"][0]["md5"]


@contextlib.contextmanager
def data_repo_lock(ws: Workspace, say: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the workspace's data-repository lock: one run at a time records a version.

    Held across ``dvc add``, the git commit and tag, and the push. Says once who holds it when
    it has to wait. A holder that dies (even by SIGKILL) releases it: the kernel drops the lock.
    """
    from alignment.workspace import file_lock

    path = ws.locks / "data-repo.lock"
    holder = path.with_name("data-repo.holder")

    def waiting() -> None:
        try:
            who = holder.read_text().strip()
        except OSError:
            who = "another run"
        say(f"waiting for the data repository lock {path}, held by {who}")

    try:
        with file_lock(path, LOCK_TIMEOUT_SECONDS, on_wait=waiting):
            started = time.strftime("%Y-%m-%dT%H:%M:%S")
            atomic_write_text(
                holder, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n"
            )
            yield
    except TimeoutError as exc:
        raise VersioningError(
            f"the data repository {ws.data_repo} stayed locked for {LOCK_TIMEOUT_SECONDS:.0f} s "
            f"({exc}); is a run stuck? The lock is released when its holder exits."
        ) from exc


def list_datasets(ws: Workspace) -> list[str]:
    """The datasets that have at least one commit in the data repository."""
    repo = ws.data_repo
    if not (repo / ".git").exists():
        return []
    proc = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "--name-only", "HEAD", "datasets/"],
        capture_output=True,
        text=True,
    )
    return sorted(Path(line).name for line in proc.stdout.splitlines() if line)


def find_version(ws: Workspace, dataset: str, version_id: str) -> DataVersion | None:
    """The recorded version whose id starts with ``version_id``, or None."""
    for version in list_versions(ws, dataset):
        if version.id.startswith(version_id) or version.tag == version_id:
            return version
    return None


def list_versions(ws: Workspace, dataset: str) -> list[DataVersion]:
    """All versions of a dataset, oldest first."""
    repo = ws.data_repo
    if not (repo / ".git").exists():
        return []
    out = _git(
        repo, "for-each-ref", "--format=%(refname:short) %(objectname)", f"refs/tags/{dataset}-*"
    )
    tagged = dict(line.split(" ")[::-1] for line in out.splitlines() if line)
    # order by the commit history, not by tag dates (two versions can share a second)
    history = _git(repo, "rev-list", "--topo-order", "--reverse", "--all").splitlines()
    versions = []
    for commit in (c for c in history if c in tagged):
        tag = tagged[commit]
        meta = json.loads(_git(repo, "show", f"{commit}:datasets/{dataset}/version.json"))
        versions.append(
            DataVersion(
                id=meta["id"],
                dataset=dataset,
                tag=tag,
                git_commit=commit,
                folder=repo / "datasets" / dataset,
                created=False,
                remote=ws.dvc_remote,
            )
        )
    return versions


def version_dataset(
    ws: Workspace,
    dataset: str,
    files_dir: Path,
    push: bool = True,
    commit: bool = True,
    landing_files: list[dict] | None = None,
) -> DataVersion:
    """Record accepted rows, rejected rows and report from ``files_dir`` as a data version.

    Identical accepted rows give the same id and create no new version. With ``commit=False``
    the files are added to DVC (cached, ``.dvc`` files written) but the git commit, tag and
    push are left to the caller: the returned version carries the commands that record it.
    Runs one at a time per workspace (``data_repo_lock``); the files are read back before and
    after ``dvc add``, and a version is tagged only when they are what validation counted.
    ``landing_files`` (path, size, sha256 of each raw file it was made from) go into its metadata.
    """
    check_dataset_name(dataset)
    files_dir = Path(files_dir)
    for name in FILES:
        if not (files_dir / name).is_file():
            raise VersioningError(f"{files_dir / name} is missing: nothing to version")
    staged = integrity.check_staged(files_dir)
    with data_repo_lock(ws):
        if (ws.data_repo / ".git").exists():
            _recover(ws.data_repo)
        repo = init_data_repo(ws)
        existing = find_version(ws, dataset, staged.version_id)
        if existing is not None:
            if push:
                _push(repo)
            return existing
        return _record(ws, repo, dataset, files_dir, staged, push, commit, landing_files)


def _recover(repo: Path) -> None:
    """Finish or undo what a run killed while recording left behind (under the lock)."""

    def verify(dataset: str, version_id: str) -> None:
        from dvc.repo import Repo

        dvc = Repo(str(repo))
        try:
            check = integrity.check_version(dvc, repo, dataset, version_id, "HEAD")
        finally:
            dvc.close()
        if not check.ok:
            raise VersioningError("; ".join(check.problems))

    integrity.recover(repo, verify, say=_say)


def _record(
    ws: Workspace,
    repo: Path,
    dataset: str,
    files_dir: Path,
    staged: integrity.Staged,
    push: bool,
    commit: bool,
    landing_files: list[dict] | None = None,
) -> DataVersion:
    """Copy, ``dvc add``, check, commit and tag one new version; under the repository lock."""
    from dvc.repo import Repo

    version_id = staged.version_id
    folder = repo / "datasets" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    rel = f"datasets/{dataset}"
    tracked = [f"{rel}/.gitignore", f"{rel}/version.json", *[f"{rel}/{n}.dvc" for n in FILES]]
    message = f"data({dataset}): version {version_id}"
    tag = f"{dataset}-{version_id[:12]}"
    integrity.begin(repo, dataset, version_id, tag, message)
    for name in FILES:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        shutil.copyfile(files_dir / name, tmp)
        faults.point("data-repo-copy")
        Path(tmp).replace(folder / name)
    dvc = Repo(str(repo))
    try:
        dvc.add([str(folder / name) for name in FILES])
        faults.point("dvc-add")
        md5s = {name: _dvc_md5(folder / f"{name}.dvc") for name in FILES}
        check = integrity.VersionCheck(dataset, version_id, tag)
        if md5s["accepted.parquet"] != version_id:
            check.problems.append(
                f"DVC's hash of accepted.parquet ({md5s['accepted.parquet']}) is not the "
                f"staged file's ({version_id}): it changed while being recorded"
            )
        integrity.check_objects(dvc.cache.local, md5s, "cache", check)
    finally:
        dvc.close()
    counted = (staged.rows["accepted.parquet"], staged.rows["rejected.parquet"])
    if check.ok and (check.accepted, check.rejected) != counted:
        check.problems.append(f"rows {check.accepted}/{check.rejected}, staged {counted}")
    if not check.ok:
        _recover(repo)  # undo the copies and .dvc files: the repository stays at its last commit
        raise VersioningError(
            f"{files_dir}: the files did not read back from the DVC cache as staged "
            f"({'; '.join(check.problems)}); nothing was recorded"
        )
    meta: dict = {"id": version_id, "dataset": dataset}
    if landing_files is not None:
        meta["landing_files"] = landing_files
    atomic_write_text(folder / "version.json", json.dumps(meta, indent=2) + "\n")
    if not commit:
        integrity.end(repo)  # the user records it: the journal must not roll it back
        commands = (
            f"cd {shlex.quote(str(repo))}",
            "git add " + " ".join(tracked),
            f"git commit -m {shlex.quote(message)}",
            f"git tag {tag}",
            *(("dvc push",) if push else ()),
        )
        return DataVersion(
            version_id, dataset, tag, "", folder, True, ws.dvc_remote, commands=commands
        )
    _git(repo, "add", *tracked)
    _git(repo, "commit", "-q", "-m", message)
    faults.point("git-commit")
    _git(repo, "tag", tag)
    integrity.end(repo)
    faults.point("git-tag")
    head = _git(repo, "rev-parse", "HEAD")
    if push:
        _push(repo)
    return DataVersion(
        id=version_id,
        dataset=dataset,
        tag=tag,
        git_commit=head,
        folder=folder,
        created=True,
        remote=ws.dvc_remote,
    )


def _push(repo: Path) -> None:
    from dvc.repo import Repo

    dvc = Repo(str(repo))
    try:
        # every tag, not only the checked-out version: a version recorded while the remote was
        # down, or completed after its run died, is pushed by whichever run comes next
        dvc.push(all_tags=True)
    except Exception as exc:  # DVC raises many types; all mean the same to the user
        raise VersioningError(
            f"dvc push to the remote failed: {exc}. The data is committed locally in {repo}; "
            "rerun once the remote is reachable and it will be pushed."
        ) from exc
    finally:
        dvc.close()


def read_version_file(ws: Workspace, version: DataVersion, name: str = "accepted.parquet") -> bytes:
    """The exact bytes of one file of a past version (from the cache or the remote)."""
    import dvc.api

    if name not in FILES:
        raise VersioningError(f"{name!r} is not a versioned file; choose one of {FILES}")
    return dvc.api.read(
        f"datasets/{version.dataset}/{name}", repo=str(ws.data_repo), rev=version.tag, mode="rb"
    )


def materialize(
    ws: Workspace, version: DataVersion, dest: Path, name: str = "accepted.parquet"
) -> Path:
    """Write one file of a past version to ``dest`` (atomically) and return the path."""
    from alignment.workspace import atomic_write_bytes

    data = read_version_file(ws, version, name)
    return atomic_write_bytes(dest, data)


def version_metadata(ws: Workspace, version: DataVersion) -> dict:
    """The version's own ``version.json`` as committed (id, dataset, landing files if recorded)."""
    path = f"{version.git_commit}:datasets/{version.dataset}/version.json"
    return json.loads(_git(ws.data_repo, "show", path))


def _require_version(ws: Workspace, dataset: str, version_id: str) -> DataVersion:
    version = find_version(ws, dataset, version_id)
    if version is None:
        known = ", ".join(v.id[:12] for v in list_versions(ws, dataset)) or "none"
        raise VersioningError(
            f"dataset {dataset!r} has no version {version_id!r} (recorded: {known}); "
            "see `alignment data versions`"
        )
    return version


def show_version(ws: Workspace, dataset: str, version_id: str) -> dict:
    """One version: its id, tag, commit, and the counts and statistics of its report."""
    version = _require_version(ws, dataset, version_id)
    report = json.loads(read_version_file(ws, version, "report.json"))
    keys = ("source", "detected_format", "input_rows", "rows_in", "accepted", "rejected")
    return {
        **version.to_dict(),
        **{k: report.get(k) for k in keys},
        "rejected_fraction": report.get("rejected_fraction"),
        "passed": report.get("passed"),
        "rule_failures": {k: v for k, v in report.get("rule_failures", {}).items() if v},
        "malformed_reasons": report.get("malformed_reasons", {}),
        "statistics": report.get("statistics", {}),
        "files": report.get("files", []),
        # how the version was read (absent in reports written before these were recorded)
        "format_requested": report.get("format_requested"),
        "columns": report.get("columns", {}),
        "read_counts": report.get("read_counts", {}),
        "landing_files": version_metadata(ws, version).get("landing_files", []),
    }


def _accepted_ids(ws: Workspace, version: DataVersion) -> set[str]:
    import io

    import pyarrow.parquet as pq

    data = read_version_file(ws, version, "accepted.parquet")
    return set(pq.read_table(io.BytesIO(data), columns=["id"]).column("id").to_pylist())


def diff_versions(ws: Workspace, dataset: str, v1: str, v2: str) -> dict:
    """Rows added and removed from v1 to v2 (by record id), and their statistics side by side."""
    a, b = _require_version(ws, dataset, v1), _require_version(ws, dataset, v2)
    ids_a, ids_b = _accepted_ids(ws, a), _accepted_ids(ws, b)
    show_a, show_b = show_version(ws, dataset, a.id), show_version(ws, dataset, b.id)
    side = ["accepted", "rejected", "rejected_fraction"]
    stats = sorted(set(show_a["statistics"]) | set(show_b["statistics"]))
    return {
        "v1": a.id,
        "v2": b.id,
        "added": len(ids_b - ids_a),
        "removed": len(ids_a - ids_b),
        "unchanged": len(ids_a & ids_b),
        "side_by_side": {
            **{k: [show_a.get(k), show_b.get(k)] for k in side},
            **{k: [show_a["statistics"].get(k), show_b["statistics"].get(k)] for k in stats},
        },
    }


def get_version(
    ws: Workspace, dataset: str, version_id: str, out: Path, name: str = "accepted.parquet"
) -> Path:
    """Restore the exact bytes of one file of a version to ``out``."""
    return materialize(ws, _require_version(ws, dataset, version_id), Path(out), name)


def _index_path(ws: Workspace) -> Path:
    return ws.root / "ingest-index.json"


def known_source(ws: Workspace, dataset: str, fingerprint: str) -> str | None:
    """The data version that this exact raw input produced before, if recorded."""
    path = _index_path(ws)
    if not path.exists():
        return None
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a cache: when unreadable, the full ingest decides
    return index.get(f"{dataset}:{fingerprint}")


def remember_source(ws: Workspace, dataset: str, fingerprint: str, version_id: str) -> None:
    """Record raw input → data version, so an unchanged landing folder is recognised at once."""
    from alignment.workspace import file_lock

    path = _index_path(ws)
    # read, change, write: two retrains (of different use cases) must not drop each other's entry
    with file_lock(ws.locks / "ingest-index.lock"):
        try:
            index = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, json.JSONDecodeError):
            index = {}
        index[f"{dataset}:{fingerprint}"] = version_id
        atomic_write_text(path, json.dumps(index, indent=2, sort_keys=True) + "\n")
