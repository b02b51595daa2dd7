"""Read what earlier versions of a dataset hold, for the checks that compare versions."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from alignment.data.quality.signature_index import FILE as SIGNATURES_FILE
from alignment.data.quality.signature_index import build_index, file_key, matches, parameters_key
from alignment.data.version import list_versions, read_version_file
from alignment.errors import VersioningError
from alignment.quality_config import NearDuplicateConfig
from alignment.workspace import Workspace, atomic_write_bytes

STORE = ".signatures"


def earlier_accepted(ws: Workspace, dataset: str) -> Iterator[pa.Table]:
    """The accepted rows of every recorded version of ``dataset``, oldest first.

    A version whose bytes do not read back as Parquet is a damaged store, not bad input:
    VersioningError names it and points at ``alignment data verify``.
    """
    yield from _accepted(ws, dataset, list_versions(ws, dataset))


def _accepted(ws: Workspace, dataset: str, versions: list) -> Iterator[pa.Table]:
    for version in versions:
        data = read_version_file(ws, version, "accepted.parquet")
        try:
            yield pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError) as exc:
            raise VersioningError(
                f"data version {version.id} of {dataset!r} ({version.tag}) does not read back as "
                f"Parquet ({exc}); run `alignment data verify {dataset}` to see what is damaged"
            ) from exc


def _store(ws: Workspace, dataset: str) -> Path:
    """Where signature indexes live: in the data repository beside the versions, kept out of
    git (each is named by the version's content id and the signing parameters)."""
    repo = ws.data_repo
    exclude = repo / ".git" / "info" / "exclude"
    known = exclude.read_text(errors="replace") if exclude.is_file() else ""
    if exclude.parent.is_dir() and f"/{STORE}/" not in known:
        with exclude.open("a") as fh:
            fh.write(f"/{STORE}/\n")
    return repo / STORE / dataset


def signatures_path(ws: Workspace, dataset: str, version_id: str, cfg: NearDuplicateConfig) -> Path:
    return _store(ws, dataset) / f"{version_id}-{parameters_key(cfg)}.parquet"


def keep_signatures(ws: Workspace, dataset: str, version_id: str, files_dir: Path) -> Path | None:
    """Keep the index an ingest wrote (``files_dir/signatures.parquet``) as the version's."""
    source = Path(files_dir) / SIGNATURES_FILE
    if not source.is_file():
        return None
    key = file_key(source)
    if key is None:
        return None
    dest = _store(ws, dataset) / f"{version_id}-{key}.parquet"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, source.read_bytes())
    return dest


def earlier_signatures(ws: Workspace, dataset: str, cfg: NearDuplicateConfig) -> Iterator[pa.Table]:
    """The signature index of every recorded version of ``dataset``, oldest first: read from
    the store, or built from the version's accepted rows (and stored) when it has none."""
    versions = list_versions(ws, dataset)
    for version in versions:
        path = signatures_path(ws, dataset, version.id, cfg)
        if path.is_file():
            try:
                table = pq.read_table(path)
            except (pa.ArrowException, OSError):
                table = None  # a damaged index is rebuilt, never trusted
            if table is not None and matches(table, cfg):
                yield table
                continue
        (rows,) = _accepted(ws, dataset, [version])
        table = build_index(rows, cfg)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
        yield table
