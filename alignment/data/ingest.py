"""Ingest stage: read a raw preference file or folder, validate it, write accepted/rejected/report.

Streaming: input is read, validated and written chunk by chunk (``ingest.chunk_rows``), so
memory is bounded by a chunk plus the hash sets that find duplicates across chunks.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from alignment import faults
from alignment.config import IngestConfig, SplitConfig, ValidationConfig
from alignment.data.formats import CANONICAL_COLUMNS, Chunk, FileInfo, ReadOptions, read_chunks
from alignment.data.formats.detect import describe_columns
from alignment.data.integrity import file_md5
from alignment.data.quality.agreement import AnnotatorAgreement
from alignment.data.quality.agreement_page import write_agreement_page
from alignment.data.quality.near_duplicates import NearDuplicates
from alignment.data.quality.repeats import RepeatedJudgements
from alignment.data.quality.signature_index import FILE as SIGNATURES_FILE
from alignment.data.quality.signature_index import IndexWriter, KeptSignatures, build_index
from alignment.data.validate import REJECTED_COLUMNS, Validator
from alignment.errors import DataFormatError, ValidationFailed
from alignment.quality_config import QualityConfig
from alignment.workspace import atomic_write_text

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


def _table(rows: list[dict], schema: pa.Schema, plain: bool = False) -> pa.Table:
    """Rows as a table; ``plain``: the values are Python's own already (no numpy, no NaN
    but in scores), as the validator gives them, so only the scores need a look."""
    if not plain:
        rows = [{k: _cell(v) for k, v in rec.items()} for rec in rows]
    rows = [
        {
            **rec,
            "score_chosen": _score(rec["score_chosen"]),
            "score_rejected": _score(rec["score_rejected"]),
        }
        for rec in rows
    ]
    return pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(None)


_PARQUET_OPTIONS = {"compression": "zstd", "write_statistics": True, "store_schema": False}


def parquet_bytes(df: pd.DataFrame, schema: pa.Schema) -> bytes:
    """Deterministic Parquet: fixed columns and types, no index, no pandas/time metadata."""
    buf = io.BytesIO()
    pq.write_table(_table(df.to_dict("records"), schema), buf, **_PARQUET_OPTIONS)
    return buf.getvalue()


class _ParquetOut:
    """A Parquet file written chunk by chunk under a temporary name, renamed when complete.

    Each chunk is encoded and compressed on a writer thread (Arrow releases the GIL there)
    while the caller reads and validates the next one; one chunk at most is in flight, and
    chunks are written in the order given, so the bytes are those of a plain sequential write.
    """

    def __init__(self, path: Path, schema: pa.Schema):
        self.path, self.schema = path, schema
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of its own, created exclusively: no two writers ever share a temporary file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        self.tmp = Path(tmp)
        self.writer = pq.ParquetWriter(str(self.tmp), schema, **_PARQUET_OPTIONS)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-out")
        self._pending: Future | None = None
        self.rows = 0

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # a write error surfaces here, in the caller

    def write(self, rows: list[dict] | pa.Table) -> None:
        if isinstance(rows, pa.Table):
            if not rows.num_rows:
                return
            table = rows.cast(self.schema).replace_schema_metadata(None)
        elif rows:
            table = _table(rows, self.schema, plain=True)
        else:
            return
        self._wait()
        if self.rows:
            faults.point("parquet-write")  # a chunk is on disk, the file is not complete
        self.rows += table.num_rows
        self._pending = self._thread.submit(self.writer.write_table, table)

    def close(self) -> Path:
        try:
            self._wait()
        except BaseException:
            self.abort()
            raise
        self._thread.shutdown()
        self.writer.close()
        self.tmp.replace(self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the error being handled is the one to report
            self._wait()
        self._thread.shutdown()
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def _rewrite(path: Path, table: pa.Table) -> int:
    """Replace a written Parquet file with ``table`` (atomically); its row count."""
    out = _ParquetOut(path, ACCEPTED_SCHEMA)
    try:
        out.write(table)
    except BaseException:
        out.abort()
        raise
    out.close()
    return out.rows


def ingest_file(
    path: Path,
    out_dir: Path,
    ingest_cfg: IngestConfig,
    validation_cfg: ValidationConfig,
    split_cfg: SplitConfig | None = None,
    quality_cfg: QualityConfig | None = None,
    earlier: Iterable[pa.Table] = (),
) -> IngestResult:
    """Read, validate and write accepted.parquet, rejected.parquet and report.json to out_dir.

    ``path`` is a file or a folder (each file detected on its own). The input is never
    modified. ``earlier``: the dataset's earlier versions, oldest first, for the near-duplicate
    check across versions: each its signature index (``history.earlier_signatures``) or its
    accepted rows. With the check on, this input's index is written as signatures.parquet.
    Raises ValidationFailed after writing the outputs when a set-level rule fails, and
    DataFormatError when a file cannot be read at all.
    """
    path = Path(path)
    out_dir = Path(out_dir)
    if path.resolve().parent == out_dir.resolve() and path.name in (
        "accepted.parquet",
        "rejected.parquet",
    ):
        raise DataFormatError(f"{path}: input would be overwritten by the ingest outputs")
    split_cfg = split_cfg or SplitConfig()
    quality_cfg = quality_cfg or QualityConfig()
    near_duplicates = index_out = None
    if quality_cfg.near_duplicates.enabled:
        near_duplicates = NearDuplicates(quality_cfg.near_duplicates)
        if quality_cfg.near_duplicates.across_versions:
            for table in earlier:
                near_duplicates.add_earlier(table)
        # this input's signatures, kept as they are computed: the next ingest reads them
        near_duplicates.kept = KeptSignatures(quality_cfg.near_duplicates)
        out_dir.mkdir(parents=True, exist_ok=True)
        index_out = IndexWriter(out_dir / SIGNATURES_FILE, quality_cfg.near_duplicates)
    agreement = AnnotatorAgreement(quality_cfg.annotators)
    repeats = RepeatedJudgements(quality_cfg.aggregate_repeats)
    validator = Validator(
        validation_cfg,
        out_dir / "validation",
        eval_fraction=split_cfg.eval_fraction,
        near_duplicates=near_duplicates,
    )
    files: list[FileInfo] = []
    accepted_out = _ParquetOut(out_dir / "accepted.parquet", ACCEPTED_SCHEMA)
    rejected_out = _ParquetOut(out_dir / "rejected.parquet", REJECTED_SCHEMA)
    rows_with_records = 0
    group: list[tuple[Chunk, pa.Table]] = []  # read chunks of one file, validated together

    def validate_group() -> None:
        tables = [table for _, table in group]
        records = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        malformed = [m for chunk, _ in group for m in chunk.malformed]
        agreement.add(records)
        repeats.add_judgements(records)
        accepted, rejected = validator.validate_chunk(records, malformed)
        repeats.add_accepted(accepted)
        accepted_out.write(accepted)
        rejected_out.write(rejected)
        if index_out is not None:
            index_out.write(near_duplicates.kept.take(accepted, near_duplicates))
        group.clear()

    try:
        for chunk in read_chunks(
            path,
            ingest_cfg.format,
            chunk_rows=ingest_cfg.chunk_rows,
            max_row_bytes=ingest_cfg.max_row_bytes,
            files=files,
            options=ReadOptions(
                ranked_pairs=ingest_cfg.ranked_pairs,
                columns=dict(ingest_cfg.columns),
                non_text_parts=ingest_cfg.non_text_parts,
                response_score=ingest_cfg.response_score,
            ),
        ):
            records = chunk.record_table()
            parsed_rows = (
                len(chunk.pair_rows)  # one response a row: a pair is made of two rows
                if chunk.pair_rows is not None
                else pc.count_distinct(records.column("row")).as_py()
            )
            rows_with_records += parsed_rows
            if parsed_rows + len(chunk.malformed) != chunk.rows:
                raise RuntimeError(f"{chunk.source}: rows lost between reading and validation")
            if group and group[0][0].source != chunk.source:
                validate_group()
            group.append((chunk, records))
            if near_duplicates is not None:  # signed in worker processes while this one reads on
                near_duplicates.presign(records)
            if sum(c.rows for c, _ in group) >= ingest_cfg.validate_rows:
                validate_group()
        if group:
            validate_group()
    except BaseException:
        accepted_out.abort()
        rejected_out.abort()
        if index_out is not None:
            index_out.abort()
        raise
    finally:
        if near_duplicates is not None:
            near_duplicates.close()
    accepted_path = accepted_out.close()
    rejected_path = rejected_out.close()
    if index_out is not None:
        index_out.close()
    validation, docs_path = validator.finish()
    annotators = agreement.report()
    if annotators is not None:
        validation["annotators"] = annotators
        if docs_path is not None:
            page = write_agreement_page(docs_path, annotators)
            validation["annotators_page"] = str(page)
    input_rows = sum(f.rows_read for f in files)
    # nothing lost: every input row gave records (judged one by one) or one quarantined row
    if rows_with_records + validation["malformed"] != input_rows:
        raise RuntimeError(
            f"{path}: {input_rows} input rows but {rows_with_records} parsed + "
            f"{validation['malformed']} malformed"
        )
    if (accepted_out.rows, rejected_out.rows) != (validation["accepted"], validation["rejected"]):
        raise RuntimeError(
            f"{path}: wrote {accepted_out.rows} accepted and {rejected_out.rows} rejected rows, "
            f"validation counted {validation['accepted']} and {validation['rejected']}"
        )
    if repeats.summary() is not None:
        validation["repeats"] = repeats.summary()
    if repeats.conflicts():
        # the written rows are this ingest's own output, not the input: rewritten once, whole
        merged, validation["repeats"] = repeats.aggregate(pq.read_table(accepted_path))
        accepted_out.rows = _rewrite(accepted_path, merged)
        validation["accepted"] = accepted_out.rows
        if index_out is not None:  # the index follows the rows it describes
            index = build_index(merged, quality_cfg.near_duplicates)
            pq.write_table(index, index_out.tmp, compression="zstd")
            index_out.tmp.replace(index_out.path)
    formats = sorted({f.detected_format for f in files})
    detected = formats[0] if len(formats) == 1 else ("mixed" if formats else ingest_cfg.format)
    report = {
        "source": str(path),
        "dataset": ingest_cfg.dataset,
        "format_requested": ingest_cfg.format,
        "detected_format": detected,
        # how the version was read: the mapping and policies, and per file its format
        "columns": dict(ingest_cfg.columns),
        "non_text_parts": ingest_cfg.non_text_parts,
        "ranked_pairs": ingest_cfg.ranked_pairs,
        **(
            {"response_score": ingest_cfg.response_score}
            if "per_response" in {f.detected_format for f in files}
            else {}
        ),
        "files": [
            {
                "source": f.source,
                "format": f.detected_format,
                "reader": f.reader,
                "rows": f.rows_read,
                **({"counts": dict(sorted(f.counts.items()))} if f.counts else {}),
            }
            for f in files
        ],
        "read_counts": dict(sorted(sum((f.counts for f in files), Counter()).items())),
        "input_rows": input_rows,
        "read_notes": [n for f in files for n in f.notes],
        **validation,
        # what was written, read back from disk: versioning checks the files still match
        "outputs": {
            out.path.name: {"rows": out.rows, "md5": file_md5(out.path)}
            for out in (accepted_out, rejected_out)
        },
    }
    report_path = atomic_write_text(
        out_dir / "report.json", json.dumps(report, indent=2, sort_keys=True) + "\n"
    )
    outcome = IngestResult(
        accepted_path=accepted_path,
        rejected_path=rejected_path,
        report_path=report_path,
        docs_path=docs_path,
        detected_format=detected,
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
    files = report.get("files", [])
    detail = (
        ", ".join(f"{f['source']}: {f['format']}" for f in files[:4])
        + (f", +{len(files) - 4} more" if len(files) > 4 else "")
        if len(files) > 1
        else result.detected_format
    )
    lines = [
        f"source      {report.get('source', '?')} ({detail})",
        f"rows        {result.rows_in} in, {result.accepted} accepted, {result.rejected} rejected "
        f"({report.get('rejected_fraction', 0):.1%})",
        f"status      {'passed' if report.get('passed') else 'FAILED'}",
    ]
    if report.get("columns"):
        lines.insert(1, f"columns     {describe_columns(report['columns'])}")
    if report.get("read_counts"):
        counted = ", ".join(f"{k}={v}" for k, v in report["read_counts"].items())
        lines.insert(-1, f"read        {counted}")
    lines += [f"  failure   {msg}" for msg in report.get("failures", [])]
    stats = report.get("statistics") or {}
    if stats.get("chosen_longer_fraction") is not None:
        lines.append(
            f"lengths     chosen longer in {stats['chosen_longer_fraction']:.1%} of pairs; mean "
            f"chars prompt {stats['mean_prompt_chars']:.0f}, chosen {stats['mean_chosen_chars']:.0f}"
            f", rejected {stats['mean_rejected_chars']:.0f}"
        )
    if report.get("skipped_rules"):
        lines.append(f"skipped     {', '.join(report['skipped_rules'])} (no validation.tokenizer)")
    near = report.get("near_duplicates")
    if near:
        lines.append(
            f"near-dups   {near['groups_total']} groups: {near['quarantined']} rows quarantined, "
            f"{near['flagged']} flagged (policy prompt={near['policy']['prompt']}, "
            f"pair={near['policy']['pair']}); {near['earlier_rows']} rows of earlier versions "
            "compared"
        )
    repeated = report.get("repeats")
    if repeated:
        lines.append(
            f"repeats     {repeated['groups']} pairs judged more than once "
            f"({repeated['judgements']} judgements, {repeated['conflicting']} conflicting): "
            f"{repeated['merged']} rows merged, labels {repeated['mode']}"
        )
    people = report.get("annotators")
    if people:
        alpha = people["krippendorff_alpha"]
        lines.append(
            f"annotators  {people['annotators']} on {people['items_judged_twice_or_more']} shared "
            f"items; Krippendorff's alpha {'n/a' if alpha is None else f'{alpha:.3f}'}; "
            f"flagged: {', '.join(people['flagged']) or 'none'}"
        )
        if report.get("annotators_page"):
            lines.append(f"agreement   {report['annotators_page']} (kappa per pair, vs majority)")
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
