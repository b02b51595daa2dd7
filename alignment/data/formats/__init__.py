"""Read preference files of any supported format into canonical pairwise records.

A canonical record is TRL's conversational preference format plus provenance::

    {"id", "prompt": [{"role", "content"}, ...], "chosen": [{"role": "assistant", ...}],
     "rejected": [...], "source", "row", "score_chosen", "score_rejected", "meta"}

Parsing is lenient about content (an empty prompt still becomes a record, so the validation
suite can name the rule it breaks) and strict about structure: a row whose shape cannot be
mapped (broken JSON, wrong types, missing fields) becomes a *malformed* row with reasons.

The modules go by family: ``files`` (file types), ``detect`` (which format a row is),
``messages``, ``transcripts``, ``ranked`` and ``argilla`` (the formats), ``columnar`` (the Arrow JSONL
reader), ``records`` and ``arrow_text`` (the canonical record), ``read`` (the entry points).
"""

from alignment.data.formats.arrow_text import (
    concat_strings,
    digest_hex16,
    messages_json,
    record_ids,
    sha256_digests,
    string_rows_with,
)
from alignment.data.formats.detect import COLUMN_KEYS, FORMATS, sniff_format
from alignment.data.formats.files import EXTENSIONS, MAX_ROW_BYTES
from alignment.data.formats.read import input_files, read_chunks, read_preferences
from alignment.data.formats.records import (
    CANONICAL_COLUMNS,
    RAW_KEEP_CHARS,
    Chunk,
    FileInfo,
    ReadOptions,
    ReadResult,
    join_record_tables,
    messages_type,
    record_id,
    records_schema,
    records_table,
    table_records,
)

__all__ = [
    "CANONICAL_COLUMNS",
    "COLUMN_KEYS",
    "EXTENSIONS",
    "FORMATS",
    "MAX_ROW_BYTES",
    "RAW_KEEP_CHARS",
    "Chunk",
    "FileInfo",
    "ReadOptions",
    "ReadResult",
    "concat_strings",
    "digest_hex16",
    "input_files",
    "join_record_tables",
    "messages_json",
    "messages_type",
    "read_chunks",
    "read_preferences",
    "record_id",
    "record_ids",
    "records_schema",
    "records_table",
    "sha256_digests",
    "sniff_format",
    "string_rows_with",
    "table_records",
]
