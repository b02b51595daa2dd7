"""Read preference files of any supported format into canonical pairwise records.

A canonical record is TRL's conversational preference format plus provenance::

    {"id", "prompt": [{"role", "content"}, ...], "chosen": [{"role": "assistant", ...}],
     "rejected": [...], "source", "row", "score_chosen", "score_rejected", "meta"}

Parsing is lenient about content (an empty prompt still becomes a record, so the validation
suite can name the rule it breaks) and strict about structure: a row whose shape cannot be
mapped (broken JSON, wrong types, missing fields) becomes a *malformed* row with reasons.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import operator
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.errors import DataFormatError

FORMATS = ("trl_standard", "trl_conversational", "hh", "sharegpt", "ranked")
EXTENSIONS = (".jsonl", ".ndjson", ".json", ".parquet", ".csv")
CANONICAL_COLUMNS = [
    "id",
    "prompt",
    "chosen",
    "rejected",
    "source",
    "row",
    "score_chosen",
    "score_rejected",
    "meta",
]
# rows looked at to detect the format
_SNIFF_ROWS = 50
_READ_BYTES = 1 << 20
_PARQUET_BATCH = 10_000
# a row (line) longer than this is quarantined unread; raw text kept in quarantine is clipped
MAX_ROW_BYTES = 8 << 20
RAW_KEEP_CHARS = 4096
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "system": "system",
}
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


@dataclass
class ReadResult:
    """What a reader made of a file: records, rows it could not parse, and the format it saw."""

    records: list[dict]
    malformed: list[dict]
    detected_format: str
    # input rows (lines, array items, table rows); a ranked row can give several records
    rows_read: int
    source: str = ""
    notes: list[str] = field(default_factory=list)


class _Malformed(Exception):
    """A row whose structure cannot be mapped; the message is the reason."""


def record_id(prompt: list[dict], chosen: list[dict], rejected: list[dict]) -> str:
    """Stable content id: sha256 of canonical JSON of prompt/chosen/rejected, 16 hex chars."""
    blob = json.dumps(
        {"prompt": prompt, "chosen": chosen, "rejected": rejected},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- file readers


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


def _clip(raw: str) -> str:
    """Raw text kept in quarantine; a huge row keeps its head (the file keeps the rest)."""
    if len(raw) <= RAW_KEEP_CHARS:
        return raw
    return raw[:RAW_KEEP_CHARS] + f"...[{len(raw) - RAW_KEEP_CHARS} more characters]"


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


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)


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


# --------------------------------------------------------------------------- detection


def sniff_format(obj: Any) -> str | None:
    """Guess the format of one parsed row, or None when it fits none."""
    if not isinstance(obj, dict):
        return None
    if "conversations" in obj and "chosen" in obj:
        return "sharegpt"
    if "responses" in obj and "prompt" in obj:
        return "ranked"
    if "chosen" not in obj or "rejected" not in obj:
        return None
    chosen = obj["chosen"]
    if "prompt" not in obj:
        if isinstance(chosen, str) and "Human:" in chosen and "Assistant:" in chosen:
            return "hh"
        if isinstance(chosen, list):
            return "trl_conversational"  # implicit prompt: the shared prefix
        return None
    if isinstance(chosen, list) or isinstance(obj["prompt"], list):
        return "trl_conversational"
    if isinstance(chosen, str):
        return "trl_standard"
    return None


def _detect(rows: list[tuple[int, Any, str]]) -> str | None:
    votes = Counter()
    for _, obj, _ in rows:
        fmt = sniff_format(obj)
        if fmt:
            votes[fmt] += 1
        if sum(votes.values()) >= _SNIFF_ROWS:
            break
    if not votes:
        return None
    # most votes; ties go to the format seen first (Counter keeps insertion order)
    return votes.most_common(1)[0][0]


# --------------------------------------------------------------------------- row parsers


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Malformed(f"wrong_type: {what} must be a string, got {type(value).__name__}")
    return value


def _messages(value: Any, what: str, default_role: str) -> list[dict]:
    """A string (one turn of default_role), a message dict, or a list of messages."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise _Malformed(
            f"wrong_type: {what} must be a string or a list of messages, got {type(value).__name__}"
        )
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise _Malformed(f"wrong_type: {what}[{i}] must be a message object")
        if "role" in msg or "content" in msg:
            role, content = msg.get("role"), msg.get("content")
        else:  # ShareGPT turn
            role = _SHAREGPT_ROLES.get(str(msg.get("from", "")).lower(), msg.get("from"))
            content = msg.get("value")
        out.append(
            {
                "role": _text(role, f"{what}[{i}].role"),
                "content": _text(content, f"{what}[{i}].content"),
            }
        )
    return out


def _require(obj: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in obj or obj[k] is None]
    if missing:
        raise _Malformed(f"missing_field: {', '.join(missing)}")


def _score(value: Any) -> Any:
    """Numbers become floats; anything else is kept as is for the validation rule to flag."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip() == "":
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _parse_trl(obj: dict) -> list[tuple[list, list, list, dict]]:
    if "prompt" in obj:
        _require(obj, "prompt", "chosen", "rejected")
        prompt = _messages(obj["prompt"], "prompt", "user")
        chosen = _messages(obj["chosen"], "chosen", "assistant")
        rejected = _messages(obj["rejected"], "rejected", "assistant")
        return [(prompt, chosen, rejected, _rest(obj, "prompt", "chosen", "rejected"))]
    # implicit prompt: full conversations in chosen/rejected share the prompt as prefix
    _require(obj, "chosen", "rejected")
    if not isinstance(obj["chosen"], list):
        raise _Malformed("missing_field: prompt")
    full_c = _messages(obj["chosen"], "chosen", "assistant")
    full_r = _messages(obj["rejected"], "rejected", "assistant")
    prompt, chosen, rejected = _split_shared_prefix(full_c, full_r)
    return [(prompt, chosen, rejected, _rest(obj, "chosen", "rejected"))]


def _split_shared_prefix(full_c: list[dict], full_r: list[dict]) -> tuple[list, list, list]:
    if not full_c or not full_r:
        raise _Malformed("missing_field: chosen/rejected conversation is empty")
    if full_c[:-1] != full_r[:-1]:
        raise _Malformed("prefix_mismatch: chosen and rejected differ before the final turn")
    return full_c[:-1], full_c[-1:], full_r[-1:]


def _hh_turns(transcript: str, what: str) -> list[dict]:
    text = "\n\n" + _text(transcript, what).lstrip()
    parts = _HH_TURN.split(text)
    # parts: [before first marker, speaker, content, speaker, content, ...]
    if len(parts) < 3 or parts[0].strip():
        raise _Malformed(f"hh_transcript: {what} has no '\\n\\nHuman:'/'\\n\\nAssistant:' turns")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)
    ]


def _parse_hh(obj: dict) -> list[tuple[list, list, list, dict]]:
    _require(obj, "chosen", "rejected")
    full_c = _hh_turns(obj["chosen"], "chosen")
    full_r = _hh_turns(obj["rejected"], "rejected")
    prompt, chosen, rejected = _split_shared_prefix(full_c, full_r)
    return [(prompt, chosen, rejected, _rest(obj, "chosen", "rejected"))]


def _parse_sharegpt(obj: dict) -> list[tuple[list, list, list, dict]]:
    _require(obj, "conversations", "chosen", "rejected")
    prompt = _messages(obj["conversations"], "conversations", "user")
    chosen = _messages(obj["chosen"], "chosen", "assistant")
    rejected = _messages(obj["rejected"], "rejected", "assistant")
    return [(prompt, chosen, rejected, _rest(obj, "conversations", "chosen", "rejected"))]


def _parse_ranked(obj: dict, ranked_pairs: str = "all") -> list[tuple[list, list, list, dict]]:
    """Every ordered pair of strictly different scores ("all"), or best against worst only."""
    _require(obj, "prompt", "responses")
    prompt = _messages(obj["prompt"], "prompt", "user")
    responses = obj["responses"]
    if not isinstance(responses, list) or len(responses) < 2:
        raise _Malformed("wrong_type: responses must be a list of at least two scored responses")
    scored = []
    for i, resp in enumerate(responses):
        if not isinstance(resp, dict):
            raise _Malformed(f"wrong_type: responses[{i}] must be an object with text and score")
        text = next((resp[k] for k in ("text", "response", "content") if k in resp), None)
        text = _text(text, f"responses[{i}].text")
        score = _score(resp.get("score"))
        if not isinstance(score, float) or not math.isfinite(score):
            raise _Malformed(f"bad_score: responses[{i}].score must be a finite number")
        scored.append((score, i, text))
    # stable order: higher score first, then input order
    scored.sort(key=lambda s: (-s[0], s[1]))
    if ranked_pairs == "best_worst":
        ordered = [(scored[0], scored[-1])] if scored[0][0] > scored[-1][0] else []
    else:
        ordered = [(a, b) for n, a in enumerate(scored) for b in scored[n + 1 :] if a[0] > b[0]]
    if not ordered:
        raise _Malformed("ranked_no_pair: all responses share one score")
    rest = _rest(obj, "prompt", "responses")
    return [
        (
            prompt,
            [{"role": "assistant", "content": a[2]}],
            [{"role": "assistant", "content": b[2]}],
            {**rest, "ranked_pair": [a[1], b[1]], "score_chosen": a[0], "score_rejected": b[0]},
        )
        for a, b in ordered
    ]


def _rest(obj: dict, *used: str) -> dict:
    return {k: v for k, v in obj.items() if k not in used}


_PARSERS = {
    "trl_standard": _parse_trl,
    "trl_conversational": _parse_trl,
    "hh": _parse_hh,
    "sharegpt": _parse_sharegpt,
    "ranked": _parse_ranked,
}


def _to_records(obj: Any, fmt: str, source: str, row: int, ranked_pairs: str = "all") -> list[dict]:
    if not isinstance(obj, dict):
        raise _Malformed(f"not_an_object: row is a {type(obj).__name__}, not an object")
    records = []
    parsed = _parse_ranked(obj, ranked_pairs) if fmt == "ranked" else _PARSERS[fmt](obj)
    for prompt, chosen, rejected, rest in parsed:
        rest = dict(rest)
        score_c = _score(rest.pop("score_chosen", None))
        score_r = _score(rest.pop("score_rejected", None))
        meta = rest.pop("meta", None)
        if rest:
            meta = {"meta": meta, **rest} if meta is not None else rest
        if meta is not None and not isinstance(meta, str):
            meta = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
        records.append(
            {
                "id": record_id(prompt, chosen, rejected),
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "source": source,
                "row": row,
                "score_chosen": score_c,
                "score_rejected": score_r,
                "meta": meta,
            }
        )
    return records


# --------------------------------------------------------------------------- columnar records


def _arrow() -> tuple[Any, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa, pc


def messages_type() -> Any:
    pa, _ = _arrow()
    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def records_schema() -> Any:
    """Canonical records as Arrow columns, plus ``score_raw``: the JSON of both scores when
    one of them is not a number (e.g. ``"high"``), kept for the bad_score rule and raw text."""
    pa, _ = _arrow()
    return pa.schema(
        [
            ("id", pa.string()),
            ("prompt", messages_type()),
            ("chosen", messages_type()),
            ("rejected", messages_type()),
            ("source", pa.string()),
            ("row", pa.int64()),
            ("score_chosen", pa.float64()),
            ("score_rejected", pa.float64()),
            ("meta", pa.string()),
            ("score_raw", pa.string()),
        ]
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def records_table(records: list[dict]) -> Any:
    """Canonical record dicts as a table in ``records_schema()`` (see ``table_records``)."""
    pa, _ = _arrow()
    rows = []
    for rec in records:
        sc, sr = rec["score_chosen"], rec["score_rejected"]
        plain = (sc is None or _number(sc)) and (sr is None or _number(sr))
        rows.append(
            {
                **rec,
                "score_chosen": float(sc) if _number(sc) else None,
                "score_rejected": float(sr) if _number(sr) else None,
                "score_raw": None if plain else _dump([sc, sr]),
            }
        )
    return pa.Table.from_pylist(rows, schema=records_schema())


def table_records(table: Any) -> list[dict]:
    """Rows of a ``records_table`` as canonical record dicts (scores as they were read)."""
    out = []
    for rec in table.to_pylist():
        raw = rec.pop("score_raw")
        if raw is not None:
            rec["score_chosen"], rec["score_rejected"] = json.loads(raw)
        out.append(rec)
    return out


def join_record_tables(tables: list[Any]) -> Any:
    """Record tables as one, ordered by input row (stable: a row's records keep their order)."""
    pa, _ = _arrow()
    if not tables:
        return records_schema().empty_table()
    if len(tables) == 1:
        return tables[0]
    table = pa.concat_tables(tables)
    rows = table.column("row").to_numpy()
    if (rows[1:] >= rows[:-1]).all():  # already in order (the usual case): no gather
        # one chunk per table, as the gather gives: the Parquet pages follow the chunks
        return table.combine_chunks()
    return table.take(rows.argsort(kind="stable"))


_ENCODE = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for strings


def string_rows_with(values: Any, flag: Any) -> Any:
    """Per string of an Arrow string array: whether ``flag`` (bytes as a uint8 numpy array ->
    bool array) marks any of its UTF-8 bytes. A vectorized scan of the data buffer, a window
    at a time so that the temporaries stay in cache."""
    pa, pc = _arrow()
    import numpy as np

    values = values.cast(pa.large_string())
    n = len(values)
    out = np.zeros(n, dtype=bool)
    _, offsets_buf, data_buf = values.buffers()
    if not n or data_buf is None:
        return out
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[values.offset : values.offset + n + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buf, dtype=np.uint8)
    hits = [
        np.flatnonzero(flag(data[w : min(w + _SCAN_WINDOW, end)])) + w
        for w in range(start, end, _SCAN_WINDOW)
    ]
    hits = np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)
    if len(hits):
        out[np.searchsorted(offsets, hits, side="right") - 1] = True
    if values.null_count:
        out &= pc.is_valid(values).to_numpy(zero_copy_only=False)
    return out


_SCAN_WINDOW = 1 << 18


def _json_escaped_bytes(data: Any) -> Any:
    # what _ENCODE escapes: C0 controls, the quote and the backslash (all ASCII bytes)
    flagged = data < 0x20
    flagged |= data == 0x22
    flagged |= data == 0x5C
    return flagged


def _json_escape(values: Any) -> Any:
    """Each string of an Arrow array as the inside of its JSON literal, as ``_ENCODE`` writes
    it: strings that need no escaping (the most) are kept as they are, the others go through
    ``_ENCODE`` itself, so both give the same text."""
    pa, pc = _arrow()

    values = values.cast(pa.large_string())
    special = string_rows_with(values, _json_escaped_bytes)
    if special.any():
        mask = pa.array(special)
        escaped = [_ENCODE(s)[1:-1] for s in values.filter(mask).to_pylist()]
        values = pc.replace_with_mask(values, mask, pa.array(escaped, pa.large_string()))
    return values


def concat_strings(*parts: Any) -> Any:
    """Row-wise concatenation of large_string arrays and str constants."""
    pa, pc = _arrow()
    text = pa.large_string()
    pieces = [pa.scalar(p, text) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*pieces, pa.scalar("", text))


def messages_json(column: Any, spaced: bool = False) -> Any:
    """Canonical JSON of each row's message list, exactly as ``json.dumps(messages,
    sort_keys=True, ensure_ascii=False, separators=(",", ":"))`` writes it (an Arrow array);
    ``spaced``: with json.dumps' default separators (", ", ": ") instead."""
    pa, pc = _arrow()
    import numpy as np

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = pc.list_flatten(column)
    content = _json_escape(pc.struct_field(flat, "content"))
    role = _json_escape(pc.struct_field(flat, "role"))
    colon, comma = (": ", ", ") if spaced else (":", ",")
    head, middle = f'{{"content"{colon}"', f'"{comma}"role"{colon}"'
    counts = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if (counts == 1).all():  # one turn per row (a response, most prompts): one concatenation
        return concat_strings("[" + head, content, middle, role, '"}]')
    turns = concat_strings(head, content, middle, role, '"}')
    offsets = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    text = pa.large_string()
    joined = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array(offsets), turns), pa.scalar(comma, text)
    )
    return concat_strings("[", joined, "]")


def sha256_digests(strings: Any) -> Any:
    """The sha256 digest of each string of an Arrow string array, as an (n, 32) uint8 array."""
    pa, _ = _arrow()
    import numpy as np

    if strings.null_count:
        raise ValueError("sha256_digests: null strings have no digest")
    # map() over C callables: no Python frame per row
    blobs = strings.cast(pa.large_binary()).to_pylist()
    digests = b"".join(map(_DIGEST, map(hashlib.sha256, blobs)))
    return np.frombuffer(digests, dtype=np.uint8).reshape(len(strings), 32)


_DIGEST = operator.methodcaller("digest")


def digest_hex16(digests: Any) -> Any:
    """The first 16 hex characters of each digest (``hexdigest()[:16]``), as an Arrow array."""
    pa, _ = _arrow()
    import numpy as np

    n = len(digests)
    hexed = np.ascontiguousarray(digests[:, :8]).tobytes().hex().encode("ascii")
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(hexed)])


def record_ids(prompt: Any, chosen: Any, rejected: Any) -> Any:
    """``record_id`` of each row of three message-list columns (same canonical JSON)."""
    blobs = concat_strings(
        '{"chosen":',
        messages_json(chosen),
        ',"prompt":',
        messages_json(prompt),
        ',"rejected":',
        messages_json(rejected),
        "}",
    )
    return digest_hex16(sha256_digests(blobs))


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
    lines: _Lines, source: str, fmt: str, ranked_pairs: str, options: tuple
) -> tuple[list[Any], list[dict], int]:
    """(record tables, malformed rows, blank lines) of a block of lines, bisecting on failure."""
    if len(lines) > _SLOW_BLOCK:
        table = _arrow_block(lines, source, options)
        if table is not None:
            return [table], [], 0
        half = len(lines) // 2
        t1, m1, b1 = _read_block(lines.part(0, half), source, fmt, ranked_pairs, options)
        t2, m2, b2 = _read_block(lines.part(half, len(lines)), source, fmt, ranked_pairs, options)
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
            records.extend(_to_records(obj, fmt, source, lineno, ranked_pairs))
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
    ranked_pairs: str,
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
                ranked_pairs,
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
            chunk.records.extend(_to_records(obj, fmt, source, lineno, ranked_pairs))
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


@dataclass
class Chunk:
    """Up to ``chunk_rows`` input rows of one file, as records and malformed rows.

    Records come as dicts (``records``) or, from the columnar JSONL reader, as an Arrow table
    in ``RECORDS_SCHEMA`` (``table``); ``record_table`` gives both as one table in row order.
    """

    records: list[dict]
    malformed: list[dict]
    rows: int  # input rows this chunk covers
    source: str
    table: Any = None  # pa.Table | None

    def record_table(self) -> Any:
        """Every record of the chunk as one table (RECORDS_SCHEMA), in input order."""
        return join_record_tables(
            [
                t
                for t in (self.table, records_table(self.records) if self.records else None)
                if t is not None
            ]
        )

    def record_dicts(self) -> list[dict]:
        """Every record of the chunk as canonical dicts, in input order."""
        if self.table is None:
            return self.records
        return table_records(self.record_table())


@dataclass
class FileInfo:
    """What the reader saw in one file: its format (detected or forced) and its rows."""

    source: str
    detected_format: str
    rows_read: int = 0
    notes: list[str] = field(default_factory=list)


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
