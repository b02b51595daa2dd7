"""Validate canonical preference records with a Great Expectations suite built in code.

Row-level rules quarantine rows (each rejected row carries every rule it broke); set-level
rules (rejected fraction, minimum accepted rows, length bias, prompt leakage between the
splits) mark the report as failed, and the caller decides to raise. Invariant:
``len(accepted) + len(rejected) == len(records) + len(malformed)`` (records, not input rows:
a ranked input row expands to several records, each judged alone).

``Validator`` runs chunk by chunk: the suite runs on each chunk (GX stays the engine of
record; the report sums its per-expectation results), while duplicate and near-duplicate
state and the set-level statistics are carried across chunks.

The rules and the per-row measurements they check live in ``alignment.data.rules``.
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

from alignment.config import ValidationConfig
from alignment.data.formats import (
    CANONICAL_COLUMNS,
    concat_strings,
    messages_json,
    records_table,
    table_records,
)
from alignment.data.gx_suite import GXRunner, start_gx_import
from alignment.data.quality.near_duplicates import RULES as NEAR_DUPLICATE_RULES
from alignment.data.quality.near_duplicates import NearDuplicates
from alignment.data.rules import (
    GX_COLUMNS,
    RULES,
    SET_RULES,
    TOKEN_COLUMNS,
    TOKEN_RULES,
    SeenState,
    flatten,
    load_tokenizer,
)
from alignment.workspace import atomic_write_text

REJECTED_COLUMNS = [*CANONICAL_COLUMNS, "raw", "reasons"]


@dataclass
class ValidationResult:
    """Rows that passed, rows quarantined with reasons, a JSON-able report, and Data Docs."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame
    report: dict
    docs_path: Path | None


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
