"""Deterministic train/eval split by a hash of the prompt, stable as the data grows."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np
import pandas as pd


def prompt_key(prompt: Any) -> str:
    """Canonical text of a prompt (message list or string) used for hashing and grouping."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:  # a list, or a numpy array of dicts when read back from Parquet
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
    return json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


_NOT_WORD = re.compile(r"[\W_]+")


def normalized_prompt(prompt_text: str) -> str:
    """The near-duplicate key of a prompt's text: lowercase, punctuation/space runs as one space."""
    return _NOT_WORD.sub(" ", prompt_text.lower()).strip()


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] for m in prompt)


def leaked_prompts(train: pd.DataFrame, evaluation: pd.DataFrame) -> list[str]:
    """Normalized prompts present in both splits (must be none)."""
    if train.empty or evaluation.empty:
        return []
    seen = {normalized_prompt(_prompt_text(p)) for p in train["prompt"]}
    return sorted(
        {k for p in evaluation["prompt"] if (k := normalized_prompt(_prompt_text(p))) in seen}
    )


def prompt_bucket(prompt: Any) -> float:
    """A number in [0, 1) fixed by the prompt alone."""
    digest = hashlib.sha256(prompt_key(prompt).encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / 16**15


def digest_buckets(digests: Any) -> np.ndarray:
    """``prompt_bucket`` from sha256 digests of prompt keys ((n, 32) uint8): the first 15 hex
    digits (60 bits) over 16**15, the same float as the per-prompt function gives."""
    head = np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)
    # both exact: a 60-bit integer rounds once to float64, and 2**60 is a power of two
    return (head >> np.uint64(4)).astype(np.float64) / float(16**15)


def prompt_buckets(prompts: Any) -> np.ndarray:
    """``prompt_bucket`` of each row of an Arrow message-list column (same canonical JSON)."""
    from alignment.data.formats import messages_json, sha256_digests

    return digest_buckets(sha256_digests(messages_json(prompts)))


def split_by_prompt(
    df: pd.DataFrame, eval_fraction: float, group_buckets: dict[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (train, eval) by prompt hash; all rows of a prompt land on one side.

    ``group_buckets`` (record id -> bucket; the ingest report's ``near_duplicates.split_buckets``)
    puts a row of a near-duplicate group on the side of the group's first prompt.

    A prompt's side depends on its own hash only, so adding rows never moves an existing
    prompt. When no prompt falls under eval_fraction and there are at least two distinct
    prompts, the prompt with the smallest hash goes to eval (so eval is never empty); that
    forced choice can move back to train once the data holds a prompt that falls there by hash.
    """
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    if df.empty:
        return df.copy(), df.copy()
    buckets = df["prompt"].map(prompt_bucket)
    if group_buckets and "id" in df:
        grouped = df["id"].map(group_buckets)
        buckets = grouped.where(grouped.notna(), buckets).astype(float)
    is_eval = buckets < eval_fraction
    if not is_eval.any() and buckets.nunique() >= 2:
        is_eval = buckets == buckets.min()
    train = df[~is_eval].reset_index(drop=True)
    evaluation = df[is_eval].reset_index(drop=True)
    leaked = leaked_prompts(train, evaluation)
    if leaked:
        from alignment.errors import ValidationFailed

        raise ValidationFailed(
            f"prompt_leakage: {len(leaked)} prompts (after normalisation) are in both train and "
            f"eval, e.g. {leaked[0][:80]!r}; re-ingest the data so near-duplicates are quarantined"
        )
    return train, evaluation
