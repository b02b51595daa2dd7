"""Read what earlier versions of a dataset hold, for the checks that compare versions."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from alignment.data.version import list_versions, read_version_file
from alignment.workspace import Workspace


def earlier_accepted(ws: Workspace, dataset: str) -> Iterator[pa.Table]:
    """The accepted rows of every recorded version of ``dataset``, oldest first."""
    for version in list_versions(ws, dataset):
        yield pq.read_table(io.BytesIO(read_version_file(ws, version, "accepted.parquet")))
