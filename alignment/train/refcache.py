"""Reference log-probabilities computed once and kept as a workspace artifact.

DPO's reference term depends only on the reference weights, the tokenized data and the
truncation length, so it is scored once per (reference model, dataset file, max_length,
tokenizer + chat template, precision) and reused by later runs and retrains:
``<workspace root>/cache/ref-logps/<key>.parquet`` with one row per record id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

CACHE_FORMAT = 1
# Files of a Hugging Face folder that decide what the reference scores: its weights and config,
# and how text becomes tokens (tokenizer, special tokens, chat template).
MODEL_FILES = ("config.json", "*.safetensors", "*.bin")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
)


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
        **(extra or {}),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


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
    """Write id -> reference log-probs of the chosen and rejected answers (write, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": pa.array([str(i) for i in ids], pa.string()),
            "ref_chosen_logps": pa.array(chosen, pa.float32()),
            "ref_rejected_logps": pa.array(rejected, pa.float32()),
        }
    ).replace_schema_metadata({"alignment": json.dumps(meta or {}, sort_keys=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


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
