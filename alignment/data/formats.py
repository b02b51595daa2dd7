"""Read preference files of any supported format into canonical pairwise records.

A canonical record is TRL's conversational preference format plus provenance::

    {"id", "prompt": [{"role", "content"}, ...], "chosen": [{"role": "assistant", ...}],
     "rejected": [...], "source", "row", "score_chosen", "score_rejected", "meta"}

Parsing is lenient about content (an empty prompt still becomes a record, so the validation
suite can name the rule it breaks) and strict about structure: a row whose shape cannot be
mapped (broken JSON, wrong types, missing fields) becomes a *malformed* row with reasons.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
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


def _read_bytes(path: Path, gz: bool, line_format: bool) -> tuple[bytes, bool]:
    """The file's bytes, gunzipped; a truncated gzip of a line format keeps what it holds."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not gz:
        return data, False
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data) + inflater.flush()
    except zlib.error as exc:
        raise DataFormatError(f"{path}: not a valid gzip file ({exc})") from exc
    if inflater.eof:
        return out, False
    if not line_format:
        raise DataFormatError(f"{path}: truncated gzip file; re-export or re-download it")
    # the rows before the cut are still good; a cut line becomes a malformed row
    return out, True


def _decode(path: Path, data: bytes) -> str:
    try:
        # utf-8-sig drops a byte-order mark if there is one
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc})") from exc


def _iter_jsonl(text: str) -> Iterator[tuple[int, Any, str]]:
    """Yield (line number, parsed object or _Malformed, raw line); blank lines are no rows."""
    for lineno, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line), line
        except json.JSONDecodeError as exc:
            yield lineno, _Malformed(f"invalid_json: {exc.msg} at column {exc.colno}"), line


def _iter_json(path: Path, text: str) -> Iterator[tuple[int, Any, str]]:
    if not text.strip():
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: a .json file must hold an array of row objects")
    for i, obj in enumerate(data):
        yield i, obj, _dump(obj)


def _iter_csv(text: str) -> Iterator[tuple[int, Any, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for i, row in enumerate(reader):
        if None in row:  # more cells than header columns
            yield i, _Malformed("wrong_type: row has more cells than the header"), _dump(row)
            continue
        yield i, {k: _cell(v) for k, v in row.items() if k is not None}, _dump(row)


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


def _iter_parquet(path: Path, data: bytes) -> Iterator[tuple[int, Any, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable Parquet file ({exc})") from exc
    for i, obj in enumerate(table.to_pylist()):
        yield i, obj, _dump(obj)


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)


def _iter_rows(path: Path, notes: list[str]) -> Iterator[tuple[int, Any, str]]:
    ext, gz = _suffixes(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    data, truncated = _read_bytes(path, gz, line_format=ext in (".jsonl", ".ndjson"))
    if truncated:
        notes.append("truncated gzip: rows after the last complete line are lost")
    if ext == ".parquet":
        return _iter_parquet(path, data) if data else iter(())
    text = _decode(path, data)
    if ext in (".jsonl", ".ndjson"):
        return _iter_jsonl(text)
    if ext == ".json":
        return _iter_json(path, text)
    return _iter_csv(text)


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


def _parse_ranked(obj: dict) -> list[tuple[list, list, list, dict]]:
    """The best response against every strictly worse one (best vs worst is always among them)."""
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
    best = scored[0]
    worse = [s for s in scored[1:] if s[0] < best[0]]
    if not worse:
        raise _Malformed("ranked_no_pair: all responses share the best score")
    rest = _rest(obj, "prompt", "responses")
    pairs = []
    for w in worse:
        meta = {**rest, "ranked_pair": [best[1], w[1]]}
        pairs.append(
            (
                prompt,
                [{"role": "assistant", "content": best[2]}],
                [{"role": "assistant", "content": w[2]}],
                {**meta, "score_chosen": best[0], "score_rejected": w[0]},
            )
        )
    return pairs


def _rest(obj: dict, *used: str) -> dict:
    return {k: v for k, v in obj.items() if k not in used}


_PARSERS = {
    "trl_standard": _parse_trl,
    "trl_conversational": _parse_trl,
    "hh": _parse_hh,
    "sharegpt": _parse_sharegpt,
    "ranked": _parse_ranked,
}


def _to_records(obj: Any, fmt: str, source: str, row: int) -> list[dict]:
    if not isinstance(obj, dict):
        raise _Malformed(f"not_an_object: row is a {type(obj).__name__}, not an object")
    records = []
    for prompt, chosen, rejected, rest in _PARSERS[fmt](obj):
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


def read_preferences(path: Path, format: str = "auto") -> ReadResult:
    """Read a JSONL/JSON/Parquet/CSV (optionally .gz) preference file into canonical records.

    Raises DataFormatError when the file cannot be read at all; bad rows are returned as
    ``malformed`` with reasons instead.
    """
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise DataFormatError(f"{path}: unknown format {format!r}; use auto or one of {FORMATS}")
    notes: list[str] = []
    rows = list(_iter_rows(path, notes))
    source = path.name
    malformed: list[dict] = []
    records: list[dict] = []
    fmt = (
        format
        if format != "auto"
        else _detect([r for r in rows if not isinstance(r[1], _Malformed)])
    )
    for lineno, obj, raw in rows:
        try:
            if isinstance(obj, _Malformed):
                raise obj
            if fmt is None:
                raise _Malformed("unknown_format: row matches no supported preference format")
            records.extend(_to_records(obj, fmt, source, lineno))
        except _Malformed as exc:
            malformed.append({"source": source, "row": lineno, "raw": raw, "reasons": [str(exc)]})
    return ReadResult(
        records=records,
        malformed=malformed,
        detected_format=fmt or "unknown",
        rows_read=len(rows),
        source=source,
        notes=notes,
    )
