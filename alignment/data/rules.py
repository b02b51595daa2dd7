"""The row-level rules of validation: their names and meanings, and the per-row measurements
(``flatten``) that the Great Expectations suite of ``validate`` checks.

Speed: records arrive as Arrow tables; ``flatten`` derives one narrow frame of per-row
measurements and flags (lengths, roles, equality, control characters, scores, hashed
duplicate keys) with column kernels, and GX validates that frame, its unexpected indexes
naming the rows to quarantine. No text passes through GX and no Python runs per row except
the duplicate bookkeeping across chunks (C-level ``map`` over sets). GX itself is imported on
a thread while the first chunk is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from alignment.config import ValidationConfig
from alignment.data.formats import messages_json, sha256_digests, string_rows_with
from alignment.data.keys import id_keys, normalized_prompt_keys
from alignment.data.splits import digest_buckets

VALID_PROMPT_ROLES = {"system", "user", "assistant"}
# C0 controls except \t \n \r, DEL, and C1 controls
CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"

# rule name -> what it means; the report and the rejected rows use these names
RULES = {
    "empty_prompt": "the prompt has no turns or a turn with no text",
    "empty_chosen": "the chosen response has no text",
    "empty_rejected": "the rejected response has no text",
    "chosen_equals_rejected": "chosen and rejected are the same text",
    "prompt_roles": "prompt roles must be system/user/assistant and end with a user turn",
    "chosen_roles": "chosen must be exactly one assistant turn",
    "rejected_roles": "rejected must be exactly one assistant turn",
    "too_long": "a turn is longer than validation.max_chars",
    "control_characters": "text holds control characters other than \\n \\t \\r",
    "bad_score": "a score is present but not a finite number",
    "score_order": "score_chosen is lower than score_rejected",
    "duplicate": "the same prompt and pair appeared earlier in the input",
    "near_duplicate": "a prompt that differs from an earlier one only in case, spacing or "
    "punctuation (it could land on the other side of the train/eval split)",
    "too_many_tokens": "prompt plus response is longer than validation.max_tokens tokens",
    "identical_after_truncation": "chosen and rejected become the same tokens once cut to "
    "validation.max_tokens",
}
# rules that need validation.tokenizer; skipped (and reported so) without one
TOKEN_RULES = ("too_many_tokens", "identical_after_truncation")
TOKEN_COLUMNS = ("pair_tokens", "identical_after_truncation")
SET_RULES = {
    "max_rejected_fraction": "more rows quarantined than validation.max_rejected_fraction",
    "min_rows": "fewer rows accepted than validation.min_rows",
    "length_bias": "chosen is longer than rejected in too many (or too few) pairs",
    "prompt_leakage": "a prompt (after normalisation) would fall in both train and eval",
}


# what str.strip() strips (str.isspace), so Arrow's trim measures text exactly as Python does
_PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# the derived columns the suite looks at; the rest of ``flatten``'s frame feeds statistics
GX_COLUMNS = [
    "prompt_min_chars",
    "chosen_chars",
    "rejected_chars",
    "chosen_equals_rejected",
    "prompt_roles_ok",
    "chosen_role",
    "rejected_role",
    "max_turn_chars",
    "control_characters",
    "scores_ok",
    "score_chosen",
    "score_rejected",
    "duplicate",
    "near_duplicate",
]


@dataclass
class SeenState:
    """What earlier chunks held: record ids, and the first spelling of each normalized prompt."""

    ids: set  # 64-bit hashes of record ids
    spelling: dict  # hash of a normalized prompt -> hash of its first exact prompt

    @classmethod
    def empty(cls) -> SeenState:
        return cls(set(), {})


@dataclass
class _Turns:
    """One message-list column taken apart: per turn role/content/length, per row bounds."""

    lists: pa.ListArray
    role: pa.Array
    content: pa.Array
    chars: np.ndarray  # characters per turn
    count: np.ndarray  # turns per row
    parent: np.ndarray  # row of each turn

    @classmethod
    def of(cls, column: Any) -> _Turns:
        lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        flat = pc.list_flatten(lists)
        content = pc.struct_field(flat, "content")
        return cls(
            lists=lists,
            role=pc.struct_field(flat, "role"),
            content=content,
            chars=pc.utf8_length(content).to_numpy(zero_copy_only=False),
            count=pc.list_value_length(lists).to_numpy(zero_copy_only=False),
            parent=pc.list_parent_indices(lists).to_numpy(zero_copy_only=False),
        )

    def regroup(self, values: pa.Array) -> pa.ListArray:
        offsets = np.zeros(len(self.count) + 1, dtype=np.int32)
        np.cumsum(self.count, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), values)

    def joined(self, sep: str) -> pa.Array:
        if (self.count == 1).all():  # one turn per row (chosen, rejected): the text itself
            return self.content
        return pc.binary_join(self.regroup(self.content), sep)

    def shape(self) -> np.ndarray:
        """'assistant' for exactly one assistant turn, else the roles joined by '|' or 'none'."""
        roles = pc.binary_join(self.regroup(self.role), "|").to_numpy(zero_copy_only=False)
        roles = roles.astype(object)
        roles[roles == ""] = "none"
        return roles


def _row_max(turns: _Turns, values: np.ndarray, n: int, empty: int = 0) -> np.ndarray:
    out = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(out, turns.parent, values)
    out[turns.count == 0] = empty
    return out


def _stripped_chars(text: pa.Array) -> np.ndarray:
    # int64, not Arrow's int32: GX compares int64/float columns vectorized, others row by row
    chars = pc.utf8_length(pc.utf8_trim(text, _PY_WHITESPACE)).to_numpy(zero_copy_only=False)
    return chars.astype(np.int64)


def flatten(
    table: pa.Table, seen: SeenState | None = None, tokenizer: Any = None, max_tokens: int = 0
) -> pd.DataFrame:
    """One row per record with the columns the expectations look at (index = record position).

    ``table`` is a record table (``formats.records_schema``); the text checks run as Arrow
    kernels over whole columns, the set-level keys (duplicates) as one pass over the rows.
    """
    seen = seen if seen is not None else SeenState.empty()
    n = table.num_rows
    prompt, chosen, rejected = (
        _Turns.of(table.column(c)) for c in ("prompt", "chosen", "rejected")
    )
    prompt_text, chosen_text, rejected_text = (t.joined("\n") for t in (prompt, chosen, rejected))
    # empty_prompt: the shortest stripped turn (0 for no turns)
    prompt_min = -_row_max(prompt, -_stripped_chars(prompt.content), n, empty=0)
    roles_ok = pc.is_in(prompt.role, value_set=pa.array(sorted(VALID_PROMPT_ROLES)))
    prompt_roles_ok = prompt.count > 0
    bad_role_rows = prompt.parent[~roles_ok.to_numpy(zero_copy_only=False)]
    prompt_roles_ok[bad_role_rows] = False
    last = np.cumsum(prompt.count) - 1
    role_values = prompt.role.to_numpy(zero_copy_only=False)
    has = prompt.count > 0
    last_user = np.zeros(n, dtype=bool)
    last_user[has] = role_values[last[has]] == "user"
    prompt_roles_ok &= last_user
    max_turn = np.maximum(
        _row_max(prompt, prompt.chars, n),
        np.maximum(_row_max(chosen, chosen.chars, n), _row_max(rejected, rejected.chars, n)),
    )
    control = _control_rows(prompt_text) | _control_rows(chosen_text) | _control_rows(rejected_text)
    scores = {}
    scores_ok = pc.is_null(table.column("score_raw")).to_numpy(zero_copy_only=False)
    for col in ("score_chosen", "score_rejected"):
        values = table.column(col).to_numpy(zero_copy_only=False).astype("float64")
        present = pc.is_valid(table.column(col)).to_numpy(zero_copy_only=False)
        finite = np.isfinite(values)
        scores_ok &= finite | ~present
        scores[col] = np.where(finite, values, np.nan)
    frame = pd.DataFrame(
        {
            "prompt_min_chars": prompt_min,
            "chosen_chars": _stripped_chars(chosen.joined("")),
            "rejected_chars": _stripped_chars(rejected.joined("")),
            "chosen_equals_rejected": pc.equal(chosen_text, rejected_text).to_numpy(
                zero_copy_only=False
            ),
            "prompt_roles_ok": prompt_roles_ok,
            "chosen_role": chosen.shape(),
            "rejected_role": rejected.shape(),
            "max_turn_chars": max_turn,
            "control_characters": control,
            "scores_ok": scores_ok,
            **scores,
            "prompt_chars": pc.utf8_length(prompt_text).to_numpy(zero_copy_only=False),
        },
        index=pd.RangeIndex(n),
    )
    _set_keys(frame, table, prompt_text, seen)
    if tokenizer is not None:
        texts = {"prompt_text": prompt_text, "chosen_text": chosen_text}
        texts["rejected_text"] = rejected_text
        _token_columns(frame, {k: v.to_pylist() for k, v in texts.items()}, tokenizer, max_tokens)
    return frame


def _control_candidate_bytes(data: np.ndarray) -> np.ndarray:
    # C0 controls but \t \n \r, DEL, and 0xC2: the lead byte of every C1 control in UTF-8
    flagged = data < 0x20
    for allowed in (0x09, 0x0A, 0x0D):
        flagged &= data != allowed
    flagged |= data == 0x7F
    flagged |= data == 0xC2
    return flagged


def _control_rows(text: pa.Array) -> np.ndarray:
    """Rows whose text holds a CONTROL_CHARS character: a byte scan finds the few candidate
    rows, the regex decides on those alone."""
    out = string_rows_with(text, _control_candidate_bytes)
    if out.any():
        rows = np.flatnonzero(out)
        found = pc.match_substring_regex(text.take(pa.array(rows)), CONTROL_CHARS)
        out[rows] = pc.fill_null(found, False).to_numpy(zero_copy_only=False)
    return out


def _set_keys(frame: pd.DataFrame, table: pa.Table, prompt_text: pa.Array, seen: SeenState) -> None:
    """duplicate / near_duplicate against every earlier row, the normalized prompt key, and
    the prompt's split bucket.

    One sha256 of the prompt's canonical JSON gives both its exact-spelling key and its
    bucket (``splits.prompt_bucket``); the seen-state updates run as C-level ``map`` calls.
    """
    digests = sha256_digests(messages_json(table.column("prompt")))
    exact = np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)
    norms = normalized_prompt_keys(prompt_text)
    ids = id_keys(table.column("id")).tolist()
    earlier = np.fromiter(map(seen.ids.__contains__, ids), dtype=bool, count=len(ids))
    seen.ids.update(ids)
    # an id twice in this chunk: every occurrence after the first is a duplicate
    frame["duplicate"] = earlier | pd.Series(ids, dtype=np.uint64).duplicated().to_numpy()
    first = list(map(seen.spelling.setdefault, norms.tolist(), exact.tolist()))
    frame["near_duplicate"] = np.array(first, dtype=np.uint64) != exact
    frame["norm_key"] = norms
    frame["bucket"] = digest_buckets(digests)


def _token_columns(
    frame: pd.DataFrame, texts: dict[str, list[str]], tokenizer: Any, max_tokens: int
) -> None:
    """Token lengths of prompt+chosen / prompt+rejected, and whether the cut makes them equal."""
    enc = {
        col: tokenizer(texts[col], add_special_tokens=False)["input_ids"]
        for col in ("prompt_text", "chosen_text", "rejected_text")
    }
    longest, identical = [], []
    for p, c, r in zip(enc["prompt_text"], enc["chosen_text"], enc["rejected_text"], strict=True):
        longest.append(len(p) + max(len(c), len(r)))
        identical.append((p + c)[:max_tokens] == (p + r)[:max_tokens])
    frame["pair_tokens"] = longest
    frame["identical_after_truncation"] = identical


def load_tokenizer(cfg: ValidationConfig) -> Any:
    """The configured tokenizer (a local folder, nothing downloaded), or None when unset."""
    if not cfg.tokenizer:
        return None
    from transformers import AutoTokenizer

    from alignment.errors import ConfigError

    folder = Path(cfg.tokenizer).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"validation.tokenizer: {folder} is not a local tokenizer folder")
    return AutoTokenizer.from_pretrained(
        str(folder), local_files_only=True, trust_remote_code=False
    )
