"""Reference log-probabilities computed once and kept as a workspace artifact.

DPO's reference term depends only on the reference weights, the tokenized data and the
truncation length, so it is scored once per (reference model, dataset file, max_length,
tokenizer + chat template, precision, library versions) and reused by later runs and retrains:
``<workspace root>/cache/ref-logps/<key>.parquet`` with one row per record id.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from alignment.workspace import atomic_write_bytes

CACHE_FORMAT = 1
# Files of a Hugging Face folder that decide what the reference scores: its weights and config
# (not training_args.bin, the pickled arguments of the run that made it), and how text becomes
# tokens: every tokenizer file of the fast, SentencePiece, WordPiece and tiktoken kinds.
MODEL_FILES = ("config.json", "*.safetensors", "pytorch_model*.bin", "adapter_model.bin")
TOKENIZER_FILES = (
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.*",
    "*.model",
    "vocab.*",
    "merges.txt",
    "*.tiktoken",
)
# Template rendering, tokenisation and the kernels that score change across these upgrades.
LIBRARIES = ("torch", "transformers", "tokenizers")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path, patterns: Iterable[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(found)


def folder_digest(folder: Path, patterns: Iterable[str]) -> str:
    """One sha256 over the named files of a folder (names and contents)."""
    folder = Path(folder)
    files = [folder] if folder.is_file() else _files(folder, patterns)
    if not files:
        raise FileNotFoundError(f"{folder}: none of {list(patterns)} found to hash")
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + file_digest(path).encode())
    return h.hexdigest()


def reference_key(
    reference_path: Path,
    dataset_path: Path,
    max_length: int,
    tokenizer_path: Path | None = None,
    extra: dict | None = None,
) -> str:
    """The cache key: sha256 over everything the cached numbers depend on."""
    parts = {
        "format": CACHE_FORMAT,
        "reference": folder_digest(reference_path, MODEL_FILES),
        "dataset": folder_digest(dataset_path, ("*.parquet",)),
        "max_length": max_length,
        "tokenizer": folder_digest(tokenizer_path or reference_path, TOKENIZER_FILES),
        "libraries": {name: _version(name) for name in LIBRARIES},
        **(extra or {}),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def cache_path(workspace_root: Path, key: str) -> Path:
    """Where the reference log-probs for `key` live in a workspace."""
    return Path(workspace_root).expanduser().resolve() / "cache" / "ref-logps" / f"{key}.parquet"


def save(
    path: Path,
    ids: Sequence[str],
    chosen: Sequence[float],
    rejected: Sequence[float],
    meta: dict | None = None,
) -> Path:
    """Write id -> reference log-probs of the chosen and rejected answers (write, then rename).

    Each writer has its own temporary file, so two runs filling the same key never interleave.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": pa.array([str(i) for i in ids], pa.string()),
            "ref_chosen_logps": pa.array(chosen, pa.float32()),
            "ref_rejected_logps": pa.array(rejected, pa.float32()),
        }
    ).replace_schema_metadata({"alignment": json.dumps(meta or {}, sort_keys=True)})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load(path: Path, ids: Sequence[str]) -> tuple[list[float], list[float]] | None:
    """Reference log-probs of the chosen and rejected answers for `ids`, in that order.

    None when there is no cache file or it lacks any of the ids (then compute again).
    """
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    table = pq.read_table(path).to_pydict()
    by_id = dict(
        zip(
            table["id"],
            zip(table["ref_chosen_logps"], table["ref_rejected_logps"], strict=True),
            strict=True,
        )
    )
    try:
        pairs = [by_id[str(i)] for i in ids]
    except KeyError:
        return None
    return [c for c, _ in pairs], [r for _, r in pairs]
