"""Reading a file or a folder of files: per-file detection, chunks, and the in-memory reader."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignment.data.formats.columnar import _FAST_FORMATS, _fast_jsonl_chunks
from alignment.data.formats.detect import _SNIFF_ROWS, FORMATS, _detect, _to_records
from alignment.data.formats.files import MAX_ROW_BYTES, _iter_rows, _suffixes
from alignment.data.formats.records import Chunk, FileInfo, ReadResult, _clip, _Malformed
from alignment.errors import DataFormatError


def input_files(path: Path) -> list[tuple[Path, str]]:
    """(file, source name) for a file, or for every supported file under a folder, sorted."""
    path = Path(path)
    if not path.is_dir():
        return [(path, path.name)]
    files = []
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        try:
            _suffixes(child)
        except DataFormatError:
            continue  # README, .DS_Store, ...: listed by the caller as skipped
        files.append((child, child.relative_to(path).as_posix()))
    return files


def read_chunks(
    path: Path,
    format: str = "auto",
    chunk_rows: int = 50_000,
    ranked_pairs: str = "all",
    max_row_bytes: int = MAX_ROW_BYTES,
    files: list[FileInfo] | None = None,
) -> Iterator[Chunk]:
    """Stream a file, or every supported file of a folder, as chunks of canonical records.

    Each file's format is detected on its own first rows (unless forced); ``files``, when
    given, receives one FileInfo per file as it is read. Memory is bounded by the chunk.
    """
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise DataFormatError(f"{path}: unknown format {format!r}; use auto or one of {FORMATS}")
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    for file, source in input_files(path):
        info = FileInfo(source=source, detected_format=format)
        if files is not None:
            files.append(info)
        yield from _file_chunks(file, source, info, format, chunk_rows, ranked_pairs, max_row_bytes)


def _file_chunks(
    file: Path,
    source: str,
    info: FileInfo,
    format: str,
    chunk_rows: int,
    ranked_pairs: str,
    max_row_bytes: int,
) -> Iterator[Chunk]:
    reader = _iter_rows(file, info.notes, max_row_bytes)
    rows: Iterator[tuple[int, Any, str]] = reader
    fmt: str | None = format
    if format == "auto":
        head = list(itertools.islice(reader, _SNIFF_ROWS * 4))
        fmt = _detect([r for r in head if not isinstance(r[1], _Malformed)])
        rows = itertools.chain(head, reader)
    info.detected_format = fmt or "unknown"
    if fmt in _FAST_FORMATS and _suffixes(file)[0] in (".jsonl", ".ndjson"):
        reader.close()  # the columnar reader opens the file afresh
        yield from _fast_jsonl_chunks(
            file, source, info, fmt, chunk_rows, ranked_pairs, max_row_bytes
        )
        return
    chunk = Chunk([], [], 0, source)
    for lineno, obj, raw in rows:
        chunk.rows += 1
        try:
            if isinstance(obj, _Malformed):
                raise obj
            if fmt is None:
                raise _Malformed("unknown_format: row matches no supported preference format")
            chunk.records.extend(_to_records(obj, fmt, source, lineno, ranked_pairs))
        except _Malformed as exc:
            chunk.malformed.append(
                {"source": source, "row": lineno, "raw": _clip(raw), "reasons": [str(exc)]}
            )
        if chunk.rows >= chunk_rows:
            info.rows_read += chunk.rows
            yield chunk
            chunk = Chunk([], [], 0, source)
    info.rows_read += chunk.rows
    if chunk.rows:
        yield chunk


def read_preferences(path: Path, format: str = "auto", ranked_pairs: str = "all") -> ReadResult:
    """Read a JSONL/JSON/Parquet/CSV (optionally .gz) file or a folder of them, all in memory.

    Raises DataFormatError when a file cannot be read at all; bad rows are returned as
    ``malformed`` with reasons instead. For big inputs use ``read_chunks``.
    """
    files: list[FileInfo] = []
    records: list[dict] = []
    malformed: list[dict] = []
    for chunk in read_chunks(
        path, format, chunk_rows=1 << 62, ranked_pairs=ranked_pairs, files=files
    ):
        records.extend(chunk.record_dicts())
        malformed.extend(chunk.malformed)
    formats = sorted({f.detected_format for f in files})
    return ReadResult(
        records=records,
        malformed=malformed,
        detected_format=formats[0] if len(formats) == 1 else ("mixed" if formats else format),
        rows_read=sum(f.rows_read for f in files),
        source=Path(path).name,
        notes=[n for f in files for n in f.notes],
    )
