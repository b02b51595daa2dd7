"""Read what earlier versions of a dataset hold, for the checks that compare versions."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from alignment.data.version import list_versions, read_version_file
from alignment.errors import VersioningError
from alignment.workspace import Workspace


def earlier_accepted(ws: Workspace, dataset: str) -> Iterator[pa.Table]:
    """The accepted rows of every recorded version of ``dataset``, oldest first.

    A version whose bytes do not read back as Parquet is a damaged store, not bad input:
    VersioningError names it and points at ``alignment data verify``.
    """
    for version in list_versions(ws, dataset):
        data = read_version_file(ws, version, "accepted.parquet")
        try:
            yield pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError) as exc:
            raise VersioningError(
                f"data version {version.id} of {dataset!r} ({version.tag}) does not read back as "
                f"Parquet ({exc}); run `alignment data verify {dataset}` to see what is damaged"
            ) from exc
