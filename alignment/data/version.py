"""Version datasets with DVC in a git+DVC repository of the workspace's own.

A data version is named by its content: the DVC (md5) hash of the accepted-rows file. The
rejected rows and the validation report are versioned beside it, in the same git commit,
and a git tag ``<dataset>-<id[:12]>`` marks the commit so any past version can be read back.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from alignment.errors import VersioningError
from alignment.workspace import Workspace

DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FILES = ("accepted.parquet", "rejected.parquet", "report.json")


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
    _git(repo, "add", ".dvc/config", ".dvc/.gitignore", ".dvcignore")
    if _git(repo, "status", "--porcelain"):
        _git(repo, "commit", "-q", "-m", "Initialise the data repository")
    return repo


def _dvc_md5(dvc_file: Path) -> str:
    meta = yaml.safe_load(dvc_file.read_text())
    return meta["outs"][0]["md5"]


def _file_md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    ws: Workspace, dataset: str, files_dir: Path, push: bool = True, commit: bool = True
) -> DataVersion:
    """Record accepted rows, rejected rows and report from ``files_dir`` as a data version.

    Identical accepted rows give the same id and create no new version. With ``commit=False``
    the files are added to DVC (cached, ``.dvc`` files written) but the git commit, tag and
    push are left to the caller: the returned version carries the commands that record it.
    """
    from dvc.repo import Repo

    check_dataset_name(dataset)
    for name in FILES:
        if not (files_dir / name).is_file():
            raise VersioningError(f"{files_dir / name} is missing: nothing to version")
    version_id = _file_md5(files_dir / "accepted.parquet")
    repo = init_data_repo(ws)
    existing = find_version(ws, dataset, version_id)
    if existing is not None:
        if push:
            _push(repo)
        return existing

    folder = repo / "datasets" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(files_dir / name, folder / f".{name}.tmp")
        (folder / f".{name}.tmp").replace(folder / name)
    dvc = Repo(str(repo))
    try:
        dvc.add([str(folder / name) for name in FILES])
    finally:
        dvc.close()
    if _dvc_md5(folder / "accepted.parquet.dvc") != version_id:
        raise VersioningError("DVC's hash of accepted.parquet differs from ours; refusing to tag")
    (folder / "version.json").write_text(
        json.dumps({"id": version_id, "dataset": dataset}, indent=2) + "\n"
    )
    rel = f"datasets/{dataset}"
    tracked = [f"{rel}/.gitignore", f"{rel}/version.json", *[f"{rel}/{n}.dvc" for n in FILES]]
    message = f"data({dataset}): version {version_id}"
    tag = f"{dataset}-{version_id[:12]}"
    if not commit:
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
    _git(repo, "tag", tag)
    commit = _git(repo, "rev-parse", "HEAD")
    if push:
        _push(repo)
    return DataVersion(
        id=version_id,
        dataset=dataset,
        tag=tag,
        git_commit=commit,
        folder=folder,
        created=True,
        remote=ws.dvc_remote,
    )


def _push(repo: Path) -> None:
    from dvc.repo import Repo

    dvc = Repo(str(repo))
    try:
        dvc.push()
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


def source_fingerprint(path: Path) -> str:
    """A content hash of a raw input file or folder (names and bytes), cheap next to ingest."""
    import hashlib

    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        if file.name.startswith("."):
            continue
        rel = file.relative_to(path) if path.is_dir() else Path(file.name)
        digest.update(str(rel).encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


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
    from alignment.workspace import atomic_write_text

    path = _index_path(ws)
    try:
        index = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        index = {}
    index[f"{dataset}:{fingerprint}"] = version_id
    atomic_write_text(path, json.dumps(index, indent=2, sort_keys=True) + "\n")
