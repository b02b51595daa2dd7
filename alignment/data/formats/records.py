"""The canonical preference record: its id, its Arrow form, and the containers readers fill."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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
RAW_KEEP_CHARS = 4096


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


def _clip(raw: str) -> str:
    """Raw text kept in quarantine; a huge row keeps its head (the file keeps the rest)."""
    if len(raw) <= RAW_KEEP_CHARS:
        return raw
    return raw[:RAW_KEEP_CHARS] + f"...[{len(raw) - RAW_KEEP_CHARS} more characters]"


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)


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
    # input row -> ids of the pairs it went into, where a pair is made of several rows (one
    # response a row); None where each record comes from one row (its ``row``)
    pair_rows: dict[int, list[str]] | None = None

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
    # "columnar" (Arrow, a block of lines at a time) or "rows" (one parsed row at a time)
    reader: str = "rows"
    # what parsing counted beside records: ranked ties skipped, non-text parts dropped, ...
    counts: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class ReadOptions:
    """How rows are read: the ``ingest`` settings that shape parsing."""

    ranked_pairs: str = "all"
    # canonical name -> the input's column name (``ingest.columns``)
    columns: dict[str, str] = field(default_factory=dict)
    # a non-text content part (image, audio): "quarantine" its row or "drop" the part
    non_text_parts: str = "quarantine"
    # one response a row: the attribute that ranks responses, or weights of a weighted sum
    response_score: str | dict[str, float] = "helpfulness"
