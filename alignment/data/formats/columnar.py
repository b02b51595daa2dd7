"""The columnar JSONL reader: conversational rows parsed by Arrow a block of lines at a time."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignment.data.formats.arrow_text import record_ids
from alignment.data.formats.detect import _to_records
from alignment.data.formats.files import (
    _READ_BYTES,
    MAX_ROW_BYTES,
    _jsonl_line,
    _open_binary,
    _suffixes,
    _truncated,
)
from alignment.data.formats.records import (
    RAW_KEEP_CHARS,
    Chunk,
    FileInfo,
    ReadOptions,
    _arrow,
    _clip,
    _Malformed,
    join_record_tables,
    messages_type,
    records_schema,
    records_table,
)

# JSONL rows of the conversational shape with nothing else are parsed by Arrow, a block of
# lines at a time; a block Arrow refuses (a broken line, another shape, extra fields) is
# halved until it is small, then read line by line, so a bad line still costs only itself.
_FAST_FORMATS = ("trl_conversational", "trl_standard")
_FAST_BLOCK = 8192
_SLOW_BLOCK = 64
_FAST_FIELDS = ("prompt", "chosen", "rejected", "score_chosen", "score_rejected")


def _fast_options() -> tuple[Any, Any]:
    pa, _ = _arrow()
    import pyarrow.json as paj

    schema = pa.schema(
        [(name, messages_type()) for name in _FAST_FIELDS[:3]]
        + [(name, pa.float64()) for name in _FAST_FIELDS[3:]]
    )
    return (
        paj.ReadOptions(use_threads=False, block_size=16 << 20),
        paj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    )


def _line_batches(stream: Any, max_bytes: int) -> Iterator[tuple]:
    """``_byte_lines`` a read at a time: the complete lines of each read as one batch
    ``(buffer, starts, ends)`` (offsets into the buffer, newline excluded), and a line over
    max_bytes that had to be dropped while read as ``(head, full length)``."""
    import numpy as np

    buf = b""
    skipped = 0  # bytes of an overlong line already dropped
    head = b""
    while True:
        data = stream.read(_READ_BYTES)
        if not data:
            break
        buf += data
        if skipped:
            nl = buf.find(b"\n")
            if nl < 0:
                skipped += len(buf)
                buf = b""
                continue
            yield head, skipped + nl
            skipped, head = 0, b""
            buf = buf[nl + 1 :]
        ends = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 0x0A)
        if len(ends):
            starts = np.empty_like(ends)
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
            yield buf, starts, ends
            buf = buf[int(ends[-1]) + 1 :]
        if len(buf) > max_bytes:
            head = buf[: RAW_KEEP_CHARS * 4]
            skipped += len(buf)
            buf = b""
    if skipped:
        yield head, skipped + len(buf)
    elif buf:
        yield buf, np.zeros(1, dtype=np.int64), np.array([len(buf)], dtype=np.int64)


@dataclass
class _Lines:
    """Lines joined by newlines in ``data``: line i is ``data[bounds[i]:bounds[i + 1] - 1]``,
    and came from input line ``linenos[i]``."""

    data: bytes
    bounds: Any  # np.ndarray, one more than the lines
    linenos: Any  # np.ndarray

    def __len__(self) -> int:
        return len(self.linenos)

    def part(self, start: int, stop: int) -> _Lines:
        return _Lines(self.data, self.bounds[start : stop + 1], self.linenos[start:stop])

    def text(self) -> memoryview:
        """The lines of this part joined by newlines, without a copy."""
        return memoryview(self.data)[int(self.bounds[0]) : int(self.bounds[-1]) - 1]

    def items(self) -> Iterator[tuple[int, bytes]]:
        bounds = self.bounds.tolist()
        for i, lineno in enumerate(self.linenos.tolist()):
            yield lineno, self.data[bounds[i] : bounds[i + 1] - 1]

    @classmethod
    def join(cls, segments: list[tuple[bytes, Any, Any, Any]]) -> _Lines:
        """One ``_Lines`` of (buffer, starts, ends, line numbers) segments, in order; a run of
        lines that lies newline-separated in its buffer is taken in one slice."""
        import numpy as np

        parts, bounds, linenos = [], [], []
        pos = 0
        for buf, starts, ends, numbers in segments:
            if not len(starts):
                continue
            if (starts[1:] == ends[:-1] + 1).all():
                data = buf[int(starts[0]) : int(ends[-1])]
                local = starts - starts[0]
            else:
                spans = zip(starts.tolist(), ends.tolist(), strict=True)
                data = b"\n".join([buf[s:e] for s, e in spans])
                local = np.zeros(len(starts), dtype=np.int64)
                np.cumsum(ends[:-1] - starts[:-1] + 1, out=local[1:])
            parts.append(data)
            bounds.append(local + pos)
            linenos.append(numbers)
            pos += len(data) + 1
        return cls(
            b"\n".join(parts),
            np.concatenate([*bounds, np.array([pos], dtype=np.int64)]),
            np.concatenate(linenos) if linenos else np.zeros(0, dtype=np.int64),
        )


def _arrow_block(lines: _Lines, source: str, options: tuple) -> Any:
    """The block's records as a table, or None when Arrow cannot map every line exactly."""
    pa, pc = _arrow()
    import pyarrow.json as paj

    try:
        table = paj.read_json(pa.BufferReader(pa.py_buffer(lines.text())), *options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(lines):  # Arrow skips blank-looking lines the reader kept
        return None
    columns = {}
    for name in _FAST_FIELDS[:3]:
        col = table.column(name).combine_chunks()
        flat = pc.list_flatten(col)
        role, content = pc.struct_field(flat, "role"), pc.struct_field(flat, "content")
        if col.null_count or flat.null_count or role.null_count or content.null_count:
            return None  # missing field or message part: the line reader names it
        try:
            role.validate(full=True)
            content.validate(full=True)
        except pa.ArrowInvalid:
            return None  # not UTF-8
        columns[name] = col
    n = table.num_rows
    return pa.table(
        {
            "id": record_ids(columns["prompt"], columns["chosen"], columns["rejected"]),
            **columns,
            "source": pa.array([source] * n, pa.string()),
            "row": pa.array(lines.linenos, pa.int64()),
            "score_chosen": table.column("score_chosen"),
            "score_rejected": table.column("score_rejected"),
            "meta": pa.nulls(n, pa.string()),
            "score_raw": pa.nulls(n, pa.string()),
        },
        schema=records_schema(),
    )


def _read_block(
    lines: _Lines, source: str, fmt: str, opts: ReadOptions, counts: Counter, options: tuple
) -> tuple[list[Any], list[dict], int]:
    """(record tables, malformed rows, blank lines) of a block of lines, bisecting on failure."""
    if len(lines) > _SLOW_BLOCK:
        table = _arrow_block(lines, source, options)
        if table is not None:
            return [table], [], 0
        half = len(lines) // 2
        t1, m1, b1 = _read_block(lines.part(0, half), source, fmt, opts, counts, options)
        t2, m2, b2 = _read_block(lines.part(half, len(lines)), source, fmt, opts, counts, options)
        return t1 + t2, m1 + m2, b1 + b2
    records, malformed, blank = [], [], 0
    for lineno, line in lines.items():
        parsed = _jsonl_line(lineno, line, len(line), MAX_ROW_BYTES)
        if parsed is None:  # whitespace that is not ASCII: no row after all
            blank += 1
            continue
        obj, raw = parsed
        try:
            if isinstance(obj, _Malformed):
                raise obj
            records.extend(_to_records(obj, fmt, source, lineno, opts, counts))
        except _Malformed as exc:
            malformed.append(
                {"source": source, "row": lineno, "raw": _clip(raw), "reasons": [str(exc)]}
            )
    return ([records_table(records)] if records else []), malformed, blank


_ASCII_SPACE = (0x20, 0x09, 0x0B, 0x0C, 0x0D)  # what bytes.isspace() takes, but the newline


def _fast_jsonl_chunks(
    file: Path,
    source: str,
    info: FileInfo,
    fmt: str,
    chunk_rows: int,
    opts: ReadOptions,
    max_row_bytes: int,
) -> Iterator[Chunk]:
    """``_file_chunks`` for JSONL of a conversational format: the same rows, read by Arrow.

    Lines are found, classified and gathered with array operations a read at a time; only
    lines that need a look of their own (over max_row_bytes, a BOM, blank-looking) go one
    by one.
    """
    import numpy as np

    options = _fast_options()
    pending: list[tuple[bytes, Any, Any, Any]] = []  # (buffer, starts, ends, line numbers)
    chunk = Chunk([], [], 0, source)
    tables: list[Any] = []

    def finish() -> Chunk:
        lines = _Lines.join(pending)
        pending.clear()
        for start in range(0, len(lines), _FAST_BLOCK):
            got, bad, blank = _read_block(
                lines.part(start, min(start + _FAST_BLOCK, len(lines))),
                source,
                fmt,
                opts,
                info.counts,
                options,
            )
            tables.extend(got)
            chunk.malformed.extend(bad)
            chunk.rows -= blank
        if chunk.records:
            tables.append(records_table(chunk.records))
            chunk.records = []
        chunk.malformed.sort(key=lambda m: m["row"])
        chunk.table = join_record_tables(tables)
        tables.clear()
        info.rows_read += chunk.rows
        return chunk

    def one_line(lineno: int, line: bytes, length: int) -> None:
        parsed = _jsonl_line(lineno, line, length, max_row_bytes)
        if parsed is None:
            return
        obj, raw = parsed
        chunk.rows += 1
        try:
            if isinstance(obj, _Malformed):
                raise obj
            chunk.records.extend(_to_records(obj, fmt, source, lineno, opts, info.counts))
        except _Malformed as exc:
            chunk.malformed.append(
                {"source": source, "row": lineno, "raw": _clip(raw), "reasons": [str(exc)]}
            )

    with contextlib.ExitStack() as stack:
        stream = _open_binary(file, _suffixes(file)[1], stack)
        lineno = 0
        for batch in _line_batches(stream, max_row_bytes):
            if len(batch) == 2:  # an overlong line, dropped while read
                one_line(lineno, *batch)
                lineno += 1
                if chunk.rows >= chunk_rows:
                    done = finish()
                    if done.rows:
                        yield done
                    chunk = Chunk([], [], 0, source)
                continue
            buf, starts, ends = batch
            k = len(starts)
            numbers = np.arange(lineno, lineno + k, dtype=np.int64)
            data = np.frombuffer(buf, dtype=np.uint8)
            special = ends - starts > max_row_bytes
            if lineno == 0 and buf.startswith(b"\xef\xbb\xbf"):
                special[0] = True
            # a line's trailing \r is no part of it; a line of ASCII whitespace is no row
            ends = ends - ((ends > starts) & (data[np.maximum(ends - 1, 0)] == 0x0D) & ~special)
            blank = (ends == starts) & ~special
            spacy = np.isin(data[np.minimum(starts, len(data) - 1)], _ASCII_SPACE)
            for i in np.flatnonzero(spacy & ~blank & ~special).tolist():
                blank[i] = buf[starts[i] : ends[i]].isspace()
            pos = 0
            for stop in [*np.flatnonzero(special).tolist(), k]:
                while pos < stop:  # ordinary lines pos..stop, up to the end of the chunk
                    rows = np.flatnonzero(~blank[pos:stop]) + pos
                    room = chunk_rows - chunk.rows
                    take = rows[:room]
                    pending.append((buf, starts[take], ends[take], numbers[take]))
                    chunk.rows += len(take)
                    pos = int(rows[room]) if len(rows) > room else stop
                    if chunk.rows >= chunk_rows:
                        done = finish()
                        if done.rows:
                            yield done
                        chunk = Chunk([], [], 0, source)
                if stop < k:
                    one_line(
                        lineno + stop,
                        buf[starts[stop] : ends[stop]],
                        int(ends[stop] - starts[stop]),
                    )
                    pos = stop + 1
                    if chunk.rows >= chunk_rows:
                        done = finish()
                        if done.rows:
                            yield done
                        chunk = Chunk([], [], 0, source)
            lineno += k
        if _truncated(stream):
            info.notes.append(
                f"{file.name}: truncated gzip: rows after the last complete one are lost"
            )
    if chunk.rows:
        done = finish()
        if done.rows:
            yield done
