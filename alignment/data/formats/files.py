"""File readers: a JSONL/JSON/CSV/Parquet file (optionally .gz) as a stream of parsed rows."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignment.data.formats.records import RAW_KEEP_CHARS, _dump, _Malformed
from alignment.errors import DataFormatError

EXTENSIONS = (".jsonl", ".ndjson", ".json", ".parquet", ".csv")
_READ_BYTES = 1 << 20
_PARQUET_BATCH = 10_000
# a row (line) longer than this is quarantined unread; raw text kept in quarantine is clipped
MAX_ROW_BYTES = 8 << 20


def _suffixes(path: Path) -> tuple[str, bool]:
    name = path.name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    for ext in EXTENSIONS:
        if name.endswith(ext):
            return ext, gz
    raise DataFormatError(
        f"{path}: unsupported file type; use one of {', '.join(EXTENSIONS)} (optionally .gz)"
    )


class _Gunzip(io.RawIOBase):
    """A streaming gunzip that, unlike ``gzip.GzipFile``, keeps what a truncated file holds."""

    def __init__(self, path: Path, fh: io.BufferedReader):
        self._path, self._fh = path, fh
        self._inflater = zlib.decompressobj(wbits=31)
        self._pending = b""
        self.truncated = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            raw = self._fh.read(_READ_BYTES)
            if not raw:
                self.truncated = not self._inflater.eof
                return 0
            try:
                if self._inflater.eof:  # a second gzip member follows
                    raw = self._inflater.unused_data + raw
                    self._inflater = zlib.decompressobj(wbits=31)
                self._pending = self._inflater.decompress(raw)
            except zlib.error as exc:
                raise DataFormatError(f"{self._path}: not a valid gzip file ({exc})") from exc
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _open_binary(path: Path, gz: bool, stack: contextlib.ExitStack) -> io.BufferedIOBase:
    try:
        fh = stack.enter_context(path.open("rb"))
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not gz:
        return fh
    return io.BufferedReader(_Gunzip(path, fh), buffer_size=_READ_BYTES)


def _truncated(stream: Any) -> bool:
    raw = getattr(stream, "raw", None)
    return isinstance(raw, _Gunzip) and raw.truncated


def _byte_lines(stream: Any, max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """Yield (line, full length) per line; a line over max_bytes keeps only its head."""
    buf = b""
    skipped = 0  # bytes of an overlong line already dropped
    head = b""
    while True:
        data = stream.read(_READ_BYTES)
        if not data:
            break
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if skipped:
                yield head, skipped + nl - start
                skipped, head = 0, b""
            else:
                yield buf[start:nl], nl - start
            start = nl + 1
        buf = buf[start:]
        if len(buf) > max_bytes or (skipped and buf):
            if not skipped:
                head = buf[: RAW_KEEP_CHARS * 4]
            skipped += len(buf)
            buf = b""
    if skipped:
        yield head, skipped + len(buf)
    elif buf:
        yield buf, len(buf)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_encodable(obj: Any, what: str = "row") -> None:
    """Raise when a string holds lone surrogates: text that has no UTF-8 form."""
    if isinstance(obj, str):
        if _SURROGATE.search(obj):
            raise _Malformed(f"bad_encoding: {what} holds text that is not valid UTF-8")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_encodable(k, what)
            _check_encodable(v, f"{k}")
    elif isinstance(obj, list):
        for v in obj:
            _check_encodable(v, what)


def _jsonl_line(lineno: int, line: bytes, length: int, max_bytes: int) -> tuple[Any, str] | None:
    """(parsed object or _Malformed, raw text) for one JSONL line; None for a blank line."""
    if lineno == 0 and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    if line.endswith(b"\r"):
        line = line[:-1]
    if length > max_bytes:
        raw = line.decode("utf-8", "backslashreplace")
        return _Malformed(f"too_large: line of {length} bytes > {max_bytes}"), raw
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = line.decode("utf-8", "backslashreplace")
        return _Malformed(f"bad_encoding: invalid UTF-8 at byte {exc.start}"), raw
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
            _check_encodable(obj)
    except json.JSONDecodeError as exc:
        obj = _Malformed(f"invalid_json: {exc.msg} at column {exc.colno}")
    except RecursionError:
        obj = _Malformed("too_deep: JSON nested deeper than the parser's recursion limit")
    except _Malformed as exc:
        obj = exc
    return obj, text


def _iter_jsonl(stream: Any, max_bytes: int) -> Iterator[tuple[int, Any, str]]:
    """Yield (line number, parsed object or _Malformed, raw line); blank lines are no rows.

    Each line is decoded on its own, so a bad byte or a huge line costs that line only.
    """
    for lineno, (line, length) in enumerate(_byte_lines(stream, max_bytes)):
        parsed = _jsonl_line(lineno, line, length, max_bytes)
        if parsed is not None:
            yield lineno, *parsed


def _iter_json(path: Path, stream: Any) -> Iterator[tuple[int, Any, str]]:
    # a JSON array is read whole (no streaming JSON parser here); use JSONL for big files
    data = stream.read()
    if _truncated(stream):
        raise DataFormatError(f"{path}: truncated gzip file; re-export or re-download it")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc})") from exc
    if not text.strip():
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    except RecursionError:
        raise DataFormatError(f"{path}: JSON nested too deeply to read") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: a .json file must hold an array of row objects")
    for i, obj in enumerate(data):
        try:
            _check_encodable(obj)
        except _Malformed as exc:
            yield i, exc, _dump(obj)
            continue
        yield i, obj, _dump(obj)


def _iter_csv(path: Path, stream: Any, max_bytes: int) -> Iterator[tuple[int, Any, str]]:
    # bad bytes become lone surrogates, so one bad cell costs its row, not the file
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    csv.field_size_limit(max(csv.field_size_limit(), max_bytes + 1))
    reader = csv.DictReader(text)
    try:
        for i, row in enumerate(reader):
            raw = _dump(row)
            if len(raw) > max_bytes:
                yield i, _Malformed(f"too_large: row of {len(raw)} characters > {max_bytes}"), raw
            elif _SURROGATE.search(raw):
                raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                yield i, _Malformed("bad_encoding: row holds bytes that are not UTF-8"), raw
            elif None in row:  # more cells than header columns
                yield i, _Malformed("wrong_type: row has more cells than the header"), raw
            else:
                yield i, {k: _cell(v) for k, v in row.items() if k is not None}, raw
    except csv.Error as exc:
        raise DataFormatError(
            f"{path}: CSV cannot be parsed past row {reader.line_num} ({exc})"
        ) from exc


def _cell(value: str | None) -> Any:
    """CSV cells are text; cells holding JSON lists or objects (messages) are parsed."""
    if value is None:
        return None
    stripped = value.strip()
    if stripped[:1] in "[{" and stripped:
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return value
    return value


def _iter_parquet(path: Path, stream: Any, gz: bool) -> Iterator[tuple[int, Any, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = io.BytesIO(stream.read()) if gz else path  # a gzipped Parquet is read whole
    try:
        pfile = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        if not path.stat().st_size:
            return
        raise DataFormatError(f"{path}: not a readable Parquet file ({exc})") from exc
    i = 0
    try:
        for batch in pfile.iter_batches(batch_size=_PARQUET_BATCH):
            for obj in batch.to_pylist():
                yield i, obj, _dump(obj)
                i += 1
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"{path}: Parquet unreadable after row {i} ({exc})") from exc


def _iter_rows(
    path: Path, notes: list[str], max_bytes: int = MAX_ROW_BYTES
) -> Iterator[tuple[int, Any, str]]:
    """Stream one file's rows as (row number, object or _Malformed, raw text)."""
    ext, gz = _suffixes(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    with contextlib.ExitStack() as stack:
        stream = _open_binary(path, gz, stack)
        if ext == ".parquet":
            yield from _iter_parquet(path, stream, gz)
        elif ext in (".jsonl", ".ndjson"):
            yield from _iter_jsonl(stream, max_bytes)
        elif ext == ".json":
            yield from _iter_json(path, stream)
        else:
            yield from _iter_csv(path, stream, max_bytes)
        if _truncated(stream):
            notes.append(f"{path.name}: truncated gzip: rows after the last complete one are lost")
