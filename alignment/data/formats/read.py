"""Reading a file or a folder of files: per-file detection, chunks, and the in-memory reader."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignment.data.formats.columnar import _FAST_FORMATS, _fast_jsonl_chunks
from alignment.data.formats.detect import (
    _SNIFF_ROWS,
    COLUMN_KEYS,
    FORMATS,
    _detect,
    _to_records,
    apply_columns,
)
from alignment.data.formats.files import MAX_ROW_BYTES, _iter_rows, _suffixes
from alignment.data.formats.per_response import per_response_chunks
from alignment.data.formats.records import (
    Chunk,
    FileInfo,
    ReadOptions,
    ReadResult,
    _clip,
    _Malformed,
)
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
    options: ReadOptions | None = None,
) -> Iterator[Chunk]:
    """Stream a file, or every supported file of a folder, as chunks of canonical records.

    Each file's format is detected on its own first rows (unless forced); ``files``, when
    given, receives one FileInfo per file as it is read. Memory is bounded by the chunk.
    """
    path = Path(path)
    opts = options or ReadOptions(ranked_pairs=ranked_pairs)
    if format != "auto" and format not in FORMATS:
        raise DataFormatError(f"{path}: unknown format {format!r}; use auto or one of {FORMATS}")
    unknown = sorted(set(opts.columns) - set(COLUMN_KEYS))
    if unknown:
        raise DataFormatError(
            f"{path}: ingest.columns maps {', '.join(unknown)}, which no format reads; "
            f"use {', '.join(COLUMN_KEYS)}"
        )
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    for file, source in input_files(path):
        info = FileInfo(source=source, detected_format=format)
        if files is not None:
            files.append(info)
        yield from _file_chunks(file, source, info, format, chunk_rows, opts, max_row_bytes)


def _has_content_parts(rows: list[tuple[int, Any, str]]) -> bool:
    """Whether any message of these rows holds typed content parts (the Arrow reader's schema
    takes string content only)."""
    for _, obj, _ in rows:
        if not isinstance(obj, dict):
            continue
        for key in ("prompt", "chosen", "rejected"):
            value = obj.get(key)
            if isinstance(value, list) and any(
                isinstance(m, dict) and isinstance(m.get("content"), list) for m in value
            ):
                return True
    return False


def _no_format_error(file: Path, head: list[tuple[int, Any, str]]) -> DataFormatError:
    seen = sorted({str(k) for _, obj, _ in head if isinstance(obj, dict) for k in obj})
    shown = ", ".join(seen[:20]) + (f", +{len(seen) - 20} more" if len(seen) > 20 else "")
    return DataFormatError(
        f"{file}: its rows match no supported preference format. Columns seen: {shown}. "
        f"Formats tried: {', '.join(FORMATS)}. Name the columns with ingest.columns "
        "(e.g. {prompt: question, chosen: response_j, rejected: response_k}) or force a "
        "format with --format."
    )


def _file_chunks(
    file: Path,
    source: str,
    info: FileInfo,
    format: str,
    chunk_rows: int,
    opts: ReadOptions,
    max_row_bytes: int,
) -> Iterator[Chunk]:
    reader = _iter_rows(file, info.notes, max_row_bytes)
    rows: Iterator[tuple[int, Any, str]] = reader
    if opts.columns:
        rows = _mapped(rows, opts.columns)
    fmt: str | None = format
    head: list[tuple[int, Any, str]] = []
    if format == "auto":
        head = list(itertools.islice(rows, _SNIFF_ROWS * 4))
        parsed = [r for r in head if not isinstance(r[1], _Malformed)]
        fmt = _detect(parsed)
        if fmt is None and any(isinstance(obj, dict) for _, obj, _ in parsed):
            reader.close()
            raise _no_format_error(file, parsed)
        rows = itertools.chain(head, rows)
    info.detected_format = fmt or "unknown"
    if fmt == "per_response":
        yield from per_response_chunks(rows, source, info, opts, chunk_rows)
        return
    if (
        fmt in _FAST_FORMATS
        and _suffixes(file)[0] in (".jsonl", ".ndjson")
        and not opts.columns
        and not _has_content_parts(head)
    ):
        reader.close()  # the columnar reader opens the file afresh
        info.reader = "columnar"
        yield from _fast_jsonl_chunks(file, source, info, fmt, chunk_rows, opts, max_row_bytes)
        return
    chunk = Chunk([], [], 0, source)
    for lineno, obj, raw in rows:
        chunk.rows += 1
        try:
            if isinstance(obj, _Malformed):
                raise obj
            if fmt is None:
                raise _Malformed("unknown_format: row matches no supported preference format")
            chunk.records.extend(_to_records(obj, fmt, source, lineno, opts, info.counts))
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


def _mapped(
    rows: Iterator[tuple[int, Any, str]], columns: dict[str, str]
) -> Iterator[tuple[int, Any, str]]:
    """Rows with ``ingest.columns`` applied; a row the mapping does not fit is malformed."""
    for lineno, obj, raw in rows:
        if not isinstance(obj, _Malformed):
            try:
                obj = apply_columns(obj, columns)
            except _Malformed as exc:
                obj = exc
        yield lineno, obj, raw


def read_preferences(
    path: Path,
    format: str = "auto",
    ranked_pairs: str = "all",
    options: ReadOptions | None = None,
) -> ReadResult:
    """Read a JSONL/JSON/Parquet/CSV (optionally .gz) file or a folder of them, all in memory.

    Raises DataFormatError when a file cannot be read at all; bad rows are returned as
    ``malformed`` with reasons instead. For big inputs use ``read_chunks``.
    """
    files: list[FileInfo] = []
    records: list[dict] = []
    malformed: list[dict] = []
    for chunk in read_chunks(
        path,
        format,
        chunk_rows=1 << 62,
        ranked_pairs=ranked_pairs,
        files=files,
        options=options,
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
