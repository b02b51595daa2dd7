"""Ingest stage: read a raw preference file, validate it, write accepted/rejected/report."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alignment.config import IngestConfig, ValidationConfig
from alignment.data.formats import CANONICAL_COLUMNS, read_preferences
from alignment.data.validate import REJECTED_COLUMNS, validate_records
from alignment.errors import DataFormatError, ValidationFailed
from alignment.workspace import atomic_write_bytes, atomic_write_text

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
ACCEPTED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt", MESSAGES),
        ("chosen", MESSAGES),
        ("rejected", MESSAGES),
        ("source", pa.string()),
        ("row", pa.int64()),
        ("score_chosen", pa.float64()),
        ("score_rejected", pa.float64()),
        ("meta", pa.string()),
    ]
)
REJECTED_SCHEMA = pa.schema(
    [*ACCEPTED_SCHEMA, ("raw", pa.string()), ("reasons", pa.list_(pa.string()))]
)
assert ACCEPTED_SCHEMA.names == CANONICAL_COLUMNS and REJECTED_SCHEMA.names == REJECTED_COLUMNS


@dataclass
class IngestResult:
    """Where the ingest stage wrote its outputs, and what it counted."""

    accepted_path: Path
    rejected_path: Path
    report_path: Path
    docs_path: Path | None
    detected_format: str
    rows_in: int
    accepted: int
    rejected: int
    report: dict


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return value


def _score(value: Any) -> float | None:
    # rejected rows may hold a non-numeric score; the raw column keeps what it was
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def parquet_bytes(df: pd.DataFrame, schema: pa.Schema) -> bytes:
    """Deterministic Parquet: fixed columns and types, no index, no pandas/time metadata."""
    rows = [{k: _cell(v) for k, v in rec.items()} for rec in df.to_dict("records")]
    for rec in rows:
        rec["score_chosen"] = _score(rec["score_chosen"])
        rec["score_rejected"] = _score(rec["score_rejected"])
    table = pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(None)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=True, store_schema=False)
    return buf.getvalue()


def ingest_file(
    path: Path, out_dir: Path, ingest_cfg: IngestConfig, validation_cfg: ValidationConfig
) -> IngestResult:
    """Read, validate and write accepted.parquet, rejected.parquet and report.json to out_dir.

    The input is never modified. Raises ValidationFailed after writing the outputs when a
    set-level rule fails, and DataFormatError when the file cannot be read at all.
    """
    path = Path(path)
    out_dir = Path(out_dir)
    if path.resolve().parent == out_dir.resolve() and path.name in (
        "accepted.parquet",
        "rejected.parquet",
    ):
        raise DataFormatError(f"{path}: input would be overwritten by the ingest outputs")
    read = read_preferences(path, ingest_cfg.format)
    result = validate_records(read.records, read.malformed, validation_cfg, out_dir / "validation")
    report = {
        "source": str(path),
        "dataset": ingest_cfg.dataset,
        "format_requested": ingest_cfg.format,
        "detected_format": read.detected_format,
        "input_rows": read.rows_read,
        "read_notes": read.notes,
        **result.report,
    }
    accepted_path = atomic_write_bytes(
        out_dir / "accepted.parquet", parquet_bytes(result.accepted, ACCEPTED_SCHEMA)
    )
    rejected_path = atomic_write_bytes(
        out_dir / "rejected.parquet", parquet_bytes(result.rejected, REJECTED_SCHEMA)
    )
    report_path = atomic_write_text(
        out_dir / "report.json", json.dumps(report, indent=2, sort_keys=True) + "\n"
    )
    outcome = IngestResult(
        accepted_path=accepted_path,
        rejected_path=rejected_path,
        report_path=report_path,
        docs_path=result.docs_path,
        detected_format=read.detected_format,
        rows_in=report["rows_in"],
        accepted=report["accepted"],
        rejected=report["rejected"],
        report=report,
    )
    if not report["passed"]:
        raise ValidationFailed(
            f"{path}: data validation failed: {'; '.join(report['failures'])}. "
            f"Rejected rows and their reasons are in {rejected_path}; report in {report_path}."
        )
    return outcome


def summary_lines(result: IngestResult) -> list[str]:
    """A one-screen summary of an ingest for people."""
    report = result.report
    lines = [
        f"source      {report.get('source', '?')} ({result.detected_format})",
        f"rows        {result.rows_in} in, {result.accepted} accepted, {result.rejected} rejected "
        f"({report.get('rejected_fraction', 0):.1%})",
        f"status      {'passed' if report.get('passed') else 'FAILED'}",
    ]
    lines += [f"  failure   {msg}" for msg in report.get("failures", [])]
    broken = {k: v for k, v in report.get("rule_failures", {}).items() if v}
    broken.update(report.get("malformed_reasons", {}))
    if broken:
        lines.append("rejections  " + ", ".join(f"{k}={v}" for k, v in sorted(broken.items())))
    lines += [
        f"accepted    {result.accepted_path}",
        f"rejected    {result.rejected_path}",
        f"report      {result.report_path}",
    ]
    if result.docs_path:
        lines.append(f"data docs   {result.docs_path}")
    return lines
