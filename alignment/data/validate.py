"""Validate canonical preference records with a Great Expectations suite built in code.

Row-level rules quarantine rows (each rejected row carries every rule it broke); set-level
rules (rejected fraction, minimum accepted rows, length bias, prompt leakage between the
splits) mark the report as failed, and the caller decides to raise. Invariant:
``len(accepted) + len(rejected) == len(records) + len(malformed)`` (records, not input rows:
a ranked input row expands to several records, each judged alone).

``Validator`` runs chunk by chunk: the suite runs on each chunk (GX stays the engine of
record; the report sums its per-expectation results), while duplicate and near-duplicate
state and the set-level statistics are carried across chunks.

Speed: records arrive as Arrow tables; ``flatten`` derives one narrow frame of per-row
measurements and flags (lengths, roles, equality, control characters, scores, hashed
duplicate keys) with column kernels, and GX validates that frame, its unexpected indexes
naming the rows to quarantine. No text passes through GX and no Python runs per row except
the duplicate bookkeeping across chunks (C-level ``map`` over sets). GX itself is imported on
a thread while the first chunk is read.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from alignment.config import ValidationConfig
from alignment.data.formats import (
    CANONICAL_COLUMNS,
    concat_strings,
    messages_json,
    records_table,
    sha256_digests,
    string_rows_with,
    table_records,
)
from alignment.data.gx_suite import GXRunner, start_gx_import
from alignment.data.keys import id_keys, normalized_prompt_keys
from alignment.data.quality.near_duplicates import RULES as NEAR_DUPLICATE_RULES
from alignment.data.quality.near_duplicates import NearDuplicates
from alignment.data.splits import digest_buckets
from alignment.workspace import atomic_write_text

REJECTED_COLUMNS = [*CANONICAL_COLUMNS, "raw", "reasons"]
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


@dataclass
class ValidationResult:
    """Rows that passed, rows quarantined with reasons, a JSON-able report, and Data Docs."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame
    report: dict
    docs_path: Path | None


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


def _raw(rec: dict) -> str:
    content = {
        k: rec[k] for k in ("prompt", "chosen", "rejected", "score_chosen", "score_rejected")
    }
    return json.dumps(content, ensure_ascii=False, sort_keys=True, default=str)


def _raw_texts(table: pa.Table, records: list[dict]) -> list[str]:
    """``_raw`` of each record of ``table`` (``records``: the same rows as dicts), with the
    message lists written by column kernels; the same text."""
    if not records:
        return []

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)

    scores = {
        col: pa.array([dump(rec[col]) for rec in records], pa.large_string())
        for col in ("score_chosen", "score_rejected")
    }
    raw = concat_strings(
        '{"chosen": ',
        messages_json(table.column("chosen"), spaced=True),
        ', "prompt": ',
        messages_json(table.column("prompt"), spaced=True),
        ', "rejected": ',
        messages_json(table.column("rejected"), spaced=True),
        ', "score_chosen": ',
        scores["score_chosen"],
        ', "score_rejected": ',
        scores["score_rejected"],
        "}",
    )
    return raw.to_pylist()


class Validator:
    """Validate chunk after chunk; ``finish`` applies the set-level rules and gives the report.

    Duplicates and near-duplicates are judged against every earlier chunk; the split side of
    each accepted prompt is tracked to prove that no prompt crosses train and eval.
    """

    def __init__(
        self,
        cfg: ValidationConfig,
        report_dir: Path,
        build_docs: bool = True,
        eval_fraction: float = 0.1,
        near_duplicates: NearDuplicates | None = None,
    ):
        self.cfg = cfg
        # judged after the row rules, on the rows that passed them
        self.near_duplicates = near_duplicates
        self.report_dir = Path(report_dir)
        self.build_docs = build_docs
        self.eval_fraction = eval_fraction
        self.tokenizer = load_tokenizer(cfg)
        self.seen = SeenState.empty()
        self._gx: GXRunner | None = None
        self._gx_import = start_gx_import()
        self.records = self.malformed = self.accepted = self.rejected = 0
        self.rule_counts = dict.fromkeys(self._counted_rules(), 0)
        self.malformed_counts: dict[str, int] = {}
        self.expectations: dict[str, dict] = {}
        # normalized prompts accepted on each side of the split
        self._train_prompts: set[int] = set()
        self._eval_prompts: set[int] = set()
        self._stats = {"chosen_longer": 0, "unequal": 0, "log_ratio_sum": 0.0}
        self._chars = {"prompt": 0, "chosen": 0, "rejected": 0}

    def _rules(self) -> list[str]:
        return [r for r in RULES if self.cfg.tokenizer or r not in TOKEN_RULES]

    def _counted_rules(self) -> list[str]:
        extra = list(NEAR_DUPLICATE_RULES) if self.near_duplicates is not None else []
        return self._rules() + extra

    def validate_chunk(self, records: Any, malformed: list[dict]) -> tuple[pa.Table, list[dict]]:
        """(accepted records as a table, rejected rows with raw text and reasons) for one chunk.

        ``records`` is a record table (``formats.records_schema``) or a list of record dicts.
        """
        table = records if isinstance(records, pa.Table) else records_table(records)
        failing: dict[str, list[int]] = {}
        flat = None
        if table.num_rows:
            flat = flatten(table, self.seen, self.tokenizer, self.cfg.max_tokens)
            if self._gx is None:
                self._gx_import.join()
                docs_dir = self.report_dir / "data_docs" if self.build_docs else None
                self._gx = GXRunner(self.cfg, docs_dir, RULES)
            columns = GX_COLUMNS + (list(TOKEN_COLUMNS) if self.tokenizer is not None else [])
            failing, results = self._gx.run(flat[columns])
            for res in results:
                agg = self.expectations.setdefault(res["rule"], {**res, "unexpected_count": 0})
                agg["success"] = agg["success"] and res["success"]
                agg["unexpected_count"] += res["unexpected_count"]
        reasons: dict[int, list[str]] = {}
        for rule in self._rules():  # fixed order, so reasons read the same every run
            for pos in failing.get(rule, []):
                reasons.setdefault(pos, []).append(rule)
            self.rule_counts[rule] += len(failing.get(rule, []))
        if self.near_duplicates is not None and table.num_rows:
            clean = np.setdiff1d(np.arange(table.num_rows), np.array(list(reasons), dtype=np.int64))
            found = self.near_duplicates.check(table.take(pa.array(clean)))
            for pos, why in found.items():
                reasons.setdefault(int(clean[pos]), []).extend(why)
                for reason in why:
                    rule = reason.split(":", 1)[0]
                    self.rule_counts[rule] = self.rule_counts.get(rule, 0) + 1
        keep = np.ones(table.num_rows, dtype=bool)
        bad = np.array(sorted(reasons), dtype=np.int64)
        keep[bad] = False
        accepted = table.filter(pa.array(keep)).drop_columns(["score_raw"])
        bad_rows = table.take(pa.array(bad))
        bad_records = table_records(bad_rows)
        rejected = [
            {**rec, "raw": raw, "reasons": reasons[i]}
            for i, rec, raw in zip(
                bad.tolist(), bad_records, _raw_texts(bad_rows, bad_records), strict=True
            )
        ]
        for m in malformed:
            rejected.append(
                {
                    **dict.fromkeys(CANONICAL_COLUMNS),
                    "source": m["source"],
                    "row": m["row"],
                    "raw": m["raw"],
                    "reasons": list(m["reasons"]),
                }
            )
            for reason in m["reasons"]:
                kind = reason.split(":", 1)[0]
                self.malformed_counts[kind] = self.malformed_counts.get(kind, 0) + 1
        rejected.sort(key=lambda r: (r["row"], r["id"] or ""))
        if accepted.num_rows + len(rejected) != table.num_rows + len(malformed):
            raise RuntimeError("validation lost rows: accepted + rejected != records + malformed")
        if flat is not None and accepted.num_rows:
            self._account(flat[keep])
        self.records += table.num_rows
        self.malformed += len(malformed)
        self.accepted += accepted.num_rows
        self.rejected += len(rejected)
        return accepted, rejected

    def _account(self, flat: pd.DataFrame) -> None:
        """Set-level statistics over accepted rows: lengths and split sides."""
        c = flat["chosen_chars"].to_numpy()
        r = flat["rejected_chars"].to_numpy()
        self._stats["chosen_longer"] += int((c > r).sum())
        self._stats["unequal"] += int((c != r).sum())
        self._stats["log_ratio_sum"] += float(
            np.log(c + 1.0).sum(dtype=np.float64) - np.log(r + 1.0).sum(dtype=np.float64)
        )
        self._chars["prompt"] += int(flat["prompt_chars"].sum())
        self._chars["chosen"] += int(c.sum())
        self._chars["rejected"] += int(r.sum())
        norms = flat["norm_key"].to_numpy()
        is_eval = flat["bucket"].to_numpy() < self.eval_fraction
        self._eval_prompts.update(norms[is_eval].tolist())
        self._train_prompts.update(norms[~is_eval].tolist())

    def statistics(self) -> dict:
        n = self.accepted
        unequal = self._stats["unequal"]
        return {
            "chosen_longer_fraction": round(self._stats["chosen_longer"] / unequal, 6)
            if unequal
            else None,
            "mean_log_length_ratio": round(self._stats["log_ratio_sum"] / n, 6) if n else None,
            "mean_prompt_chars": round(self._chars["prompt"] / n, 3) if n else None,
            "mean_chosen_chars": round(self._chars["chosen"] / n, 3) if n else None,
            "mean_rejected_chars": round(self._chars["rejected"] / n, 3) if n else None,
            "prompts": len(self._train_prompts | self._eval_prompts),
            "eval_prompts": len(self._eval_prompts),
            "leaked_prompts": len(self._train_prompts & self._eval_prompts),
        }

    def finish(self) -> tuple[dict, Path | None]:
        """Apply the set-level rules; return the report and the Data Docs page."""
        cfg = self.cfg
        total = self.records + self.malformed
        if self.accepted + self.rejected != total:
            raise RuntimeError(
                f"validation lost rows: {self.accepted} + {self.rejected} != {total}"
            )
        stats = self.statistics()
        fraction = self.rejected / total if total else 0.0
        failures = []
        if fraction > cfg.max_rejected_fraction:
            failures.append(
                f"max_rejected_fraction: {self.rejected} of {total} rows rejected "
                f"({fraction:.1%} > {cfg.max_rejected_fraction:.1%})"
            )
        if self.accepted < cfg.min_rows:
            failures.append(f"min_rows: {self.accepted} rows accepted, fewer than {cfg.min_rows}")
        bias = stats["chosen_longer_fraction"]
        if (
            bias is not None
            and self._stats["unequal"] >= cfg.length_bias_min_pairs
            and not 1 - cfg.max_length_bias <= bias <= cfg.max_length_bias
        ):
            failures.append(
                f"length_bias: chosen is longer than rejected in {bias:.1%} of pairs, outside "
                f"[{1 - cfg.max_length_bias:.1%}, {cfg.max_length_bias:.1%}] "
                "(validation.max_length_bias); a model trained on it learns length, not quality"
            )
        if stats["leaked_prompts"]:
            failures.append(
                f"prompt_leakage: {stats['leaked_prompts']} normalized prompts fall in both "
                "train and eval"
            )
        docs_path = self._gx.build_docs() if self._gx is not None else None
        expectations = sorted(
            self.expectations.values(), key=lambda e: list(RULES).index(e["rule"])
        )
        report = {
            "passed": not failures,
            "failures": failures,
            "rows_in": total,
            "records": self.records,
            "malformed": self.malformed,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_fraction": round(fraction, 6),
            "rule_failures": dict(self.rule_counts),
            "skipped_rules": [] if cfg.tokenizer else list(TOKEN_RULES),
            "malformed_reasons": dict(sorted(self.malformed_counts.items())),
            "statistics": stats,
            "expectations": expectations,
            "rules": {**RULES, **(NEAR_DUPLICATE_RULES if self.near_duplicates else {})},
            "set_rules": SET_RULES,
            "thresholds": cfg.model_dump(mode="json"),
            "docs": str(docs_path) if docs_path else None,
        }
        if self.near_duplicates is not None:
            report["near_duplicates"] = self.near_duplicates.report()
        if self.build_docs and docs_path is None:
            docs_path = _write_html_summary(self.report_dir / "validation.html", report)
            report["docs"] = str(docs_path)
        return report, docs_path


def validate_records(
    records: list[dict],
    malformed: list[dict],
    cfg: ValidationConfig,
    report_dir: Path,
    build_docs: bool = True,
    eval_fraction: float = 0.1,
) -> ValidationResult:
    """Validate records held in memory as one chunk (see ``Validator`` for streams).

    ``report["passed"]`` is False when a set-level rule fails; the caller raises.
    """
    validator = Validator(cfg, report_dir, build_docs, eval_fraction)
    accepted_table, rejected_rows = validator.validate_chunk(records, malformed)
    report, docs_path = validator.finish()
    accepted = pd.DataFrame(accepted_table.to_pylist(), columns=CANONICAL_COLUMNS)
    rejected = pd.DataFrame(rejected_rows, columns=REJECTED_COLUMNS)
    return ValidationResult(
        accepted=accepted, rejected=rejected, report=report, docs_path=docs_path
    )


def _write_html_summary(path: Path, report: dict) -> Path:
    """A one-page report for when GX Data Docs were not built (no rows to validate)."""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>"
        for k, v in report["rule_failures"].items()
    )
    status = "passed" if report["passed"] else "FAILED: " + "; ".join(report["failures"])
    body = (
        "<html><head><meta charset='utf-8'><title>Preference data validation</title></head><body>"
        f"<h1>Preference data validation</h1><p>{html.escape(status)}</p>"
        f"<p>{report['accepted']} accepted, {report['rejected']} rejected of {report['rows_in']}</p>"
        f"<table><tr><th>rule</th><th>rows failing</th></tr>{rows}</table></body></html>"
    )
    return atomic_write_text(path, body)
