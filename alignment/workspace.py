"""Where run-time state lives: MLflow store, DVC data repo and remote, runs, models, reports."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from alignment.config import WorkspaceConfig

OWNER = ".owner"  # in a folder made by unique_dir: "<pid> <host>" of the run that made it


@dataclass(frozen=True)
class Workspace:
    """A folder holding every piece of run-time state, each at a fixed place."""

    root: Path
    tracking_uri_override: str | None = None
    dvc_remote_override: str | None = None

    @classmethod
    def from_config(cls, cfg: WorkspaceConfig) -> Workspace:
        return cls(cfg.root.expanduser().resolve(), cfg.mlflow_tracking_uri, cfg.dvc_remote)

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def tracking_uri(self) -> str:
        return (
            os.environ.get("MLFLOW_TRACKING_URI")
            or self.tracking_uri_override
            or f"sqlite:///{self.mlflow_db}"
        )

    @property
    def data_repo(self) -> Path:
        """A git+DVC repository of its own that versions the datasets."""
        return self.root / "data-repo"

    @property
    def dvc_remote(self) -> str:
        return self.dvc_remote_override or str(self.root / "dvc-remote")

    @property
    def runs(self) -> Path:
        """Training jobs: configs, logs, checkpoints, final models."""
        return self.root / "runs"

    @property
    def models(self) -> Path:
        """Base models built or converted at setup (tiny, smollm2)."""
        return self.root / "models"

    @property
    def reports(self) -> Path:
        """Validation reports and Data Docs, evaluation reports."""
        return self.root / "reports"

    @property
    def staging(self) -> Path:
        """Scratch space for files on their way into the data repo."""
        return self.root / "staging"

    def ensure(self) -> Workspace:
        for folder in (
            self.root,
            self.mlflow_artifacts,
            self.runs,
            self.models,
            self.reports,
            self.staging,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def locks(self) -> Path:
        """Lock files: one per resource that runs on this machine take in turn."""
        return self.root / "locks"

    def contains(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.root)


def unique_dir(parent: Path, prefix: str) -> Path:
    """A new folder ``parent/<prefix>-<time>-<random>``, created exclusively and private (0700).

    Two runs started in the same second never share one: the time is for people reading the
    listing, the random part (``mkdtemp``) for correctness.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-{stamp}-", dir=parent))
    (folder / OWNER).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    return folder


def remove_dead_partials(parent: Path) -> list[Path]:
    """Delete the half-written ``.*.tmp`` files in folders of ``parent`` whose run has died.

    A folder made by ``unique_dir`` names its owner (pid and host). A run killed while writing
    leaves its temporary files behind; the next run on the same host removes them. Finished
    files (and a dead run's complete outputs, kept for inspection) are never touched.
    """
    removed: list[Path] = []
    host = socket.gethostname()
    for owner in Path(parent).glob(f"*/{OWNER}"):
        try:
            pid, owner_host = owner.read_text().split()
        except (OSError, ValueError):
            continue
        if owner_host != host or _alive(int(pid)):
            continue
        for partial in owner.parent.glob(".*.tmp"):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write then rename, so a crash leaves the old file or the new, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def file_lock(
    path: Path, timeout: float | None = 600.0, on_wait: Callable[[], None] | None = None
) -> Iterator[Path]:
    """Hold an exclusive flock on ``path`` (per open file, so threads serialise too).

    ``timeout=0`` tries once; ``None`` waits for ever. Raises ``TimeoutError`` when not acquired.
    ``on_wait`` is called once, when the lock is found held, before waiting. The kernel drops
    a flock when its holder dies (even by SIGKILL), so a dead run never leaves a stale lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    with open(path, "a+") as fh:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"{path} is held by another process") from None
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                time.sleep(0.05)
        try:
            yield path
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
