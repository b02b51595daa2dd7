"""Validate canonical preference records with a Great Expectations suite built in code.

Row-level rules quarantine rows (each rejected row carries every rule it broke); set-level
rules (rejected fraction, minimum accepted rows, length bias, prompt leakage between the
splits) mark the report as failed, and the caller decides to raise. Invariant:
``len(accepted) + len(rejected) == len(records) + len(malformed)`` (records, not input rows:
a ranked input row expands to several records, each judged alone).

``Validator`` runs chunk by chunk: the suite runs on each chunk (GX stays the engine of
record; the report sums its per-expectation results), while duplicate and near-duplicate
state and the set-level statistics are carried across chunks.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from alignment.config import ValidationConfig
from alignment.data.formats import CANONICAL_COLUMNS
from alignment.data.splits import normalized_prompt, prompt_bucket
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


def _texts(messages: Any) -> list[str]:
    return [m["content"] for m in messages]


def _score_ok(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value)


def _as_float(value: Any) -> float | None:
    return float(value) if _score_ok(value) and value is not None else None


def _turn_shape(messages: list[dict]) -> str:
    """'assistant' for exactly one assistant turn, else a description of what is there."""
    roles = [m["role"] for m in messages]
    return "assistant" if roles == ["assistant"] else "|".join(roles) or "none"


def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass
class SeenState:
    """What earlier chunks held: record ids, and the first spelling of each normalized prompt."""

    ids: set
    spelling: dict  # normalized prompt key -> exact prompt key

    @classmethod
    def empty(cls) -> SeenState:
        return cls(set(), {})


def flatten(
    records: list[dict], seen: SeenState | None = None, tokenizer: Any = None, max_tokens: int = 0
) -> pd.DataFrame:
    """One row per record with the columns the expectations look at (index = record position)."""
    seen = seen if seen is not None else SeenState.empty()
    cols: dict[str, list] = {
        name: []
        for name in [
            "prompt_text",
            "chosen_text",
            "rejected_text",
            "prompt_min_chars",
            "chosen_chars",
            "rejected_chars",
            "prompt_roles_ok",
            "chosen_role",
            "rejected_role",
            "max_turn_chars",
            "all_text",
            "scores_ok",
            "score_chosen",
            "score_rejected",
            "duplicate",
            "near_duplicate",
            "norm_key",
        ]
    }
    for rec in records:
        prompt, chosen, rejected = rec["prompt"], rec["chosen"], rec["rejected"]
        p_texts, c_texts, r_texts = _texts(prompt), _texts(chosen), _texts(rejected)
        roles = [m["role"] for m in prompt]
        prompt_text = "\n".join(p_texts)
        chosen_text = "\n".join(c_texts)
        rejected_text = "\n".join(r_texts)
        cols["prompt_text"].append(prompt_text)
        cols["chosen_text"].append(chosen_text)
        cols["rejected_text"].append(rejected_text)
        cols["prompt_min_chars"].append(min((len(t.strip()) for t in p_texts), default=0))
        cols["chosen_chars"].append(len("".join(c_texts).strip()))
        cols["rejected_chars"].append(len("".join(r_texts).strip()))
        cols["prompt_roles_ok"].append(
            bool(roles) and roles[-1] == "user" and all(r in VALID_PROMPT_ROLES for r in roles)
        )
        cols["chosen_role"].append(_turn_shape(chosen))
        cols["rejected_role"].append(_turn_shape(rejected))
        cols["max_turn_chars"].append(max(map(len, p_texts + c_texts + r_texts), default=0))
        cols["all_text"].append("\n".join((prompt_text, chosen_text, rejected_text)))
        cols["scores_ok"].append(
            _score_ok(rec["score_chosen"]) and _score_ok(rec["score_rejected"])
        )
        cols["score_chosen"].append(_as_float(rec["score_chosen"]))
        cols["score_rejected"].append(_as_float(rec["score_rejected"]))
        rid = int(rec["id"], 16)
        cols["duplicate"].append(rid in seen.ids)
        seen.ids.add(rid)
        norm = _key(normalized_prompt(prompt_text))
        exact = _key("\x1e".join(f"{m['role']}\x1f{m['content']}" for m in prompt))
        first = seen.spelling.setdefault(norm, exact)
        cols["near_duplicate"].append(first != exact)
        cols["norm_key"].append(norm)
    frame = pd.DataFrame(cols, index=pd.RangeIndex(len(records)))
    for col in ("score_chosen", "score_rejected"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["norm_key"] = frame["norm_key"].astype("uint64")
    if tokenizer is not None:
        _token_columns(frame, tokenizer, max_tokens)
    return frame


def _token_columns(frame: pd.DataFrame, tokenizer: Any, max_tokens: int) -> None:
    """Token lengths of prompt+chosen / prompt+rejected, and whether the cut makes them equal."""
    enc = {
        col: tokenizer(frame[col].tolist(), add_special_tokens=False)["input_ids"]
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


def _suite(gx: Any, gxe: Any, cfg: ValidationConfig) -> Any:
    suite = gx.ExpectationSuite(name="preference_pairs")

    def add(rule: str, expectation: Any) -> None:
        expectation.meta = {"rule": rule, "notes": RULES[rule]}
        suite.add_expectation(expectation)

    add("empty_prompt", gxe.ExpectColumnValuesToBeBetween(column="prompt_min_chars", min_value=1))
    add("empty_chosen", gxe.ExpectColumnValuesToBeBetween(column="chosen_chars", min_value=1))
    add("empty_rejected", gxe.ExpectColumnValuesToBeBetween(column="rejected_chars", min_value=1))
    add(
        "chosen_equals_rejected",
        gxe.ExpectSelectColumnValuesToBeUniqueWithinRecord(
            column_list=["chosen_text", "rejected_text"], ignore_row_if="never"
        ),
    )
    add("prompt_roles", gxe.ExpectColumnValuesToBeInSet(column="prompt_roles_ok", value_set=[True]))
    add(
        "chosen_roles",
        gxe.ExpectColumnValuesToBeInSet(column="chosen_role", value_set=["assistant"]),
    )
    add(
        "rejected_roles",
        gxe.ExpectColumnValuesToBeInSet(column="rejected_role", value_set=["assistant"]),
    )
    add(
        "too_long",
        gxe.ExpectColumnValuesToBeBetween(column="max_turn_chars", max_value=cfg.max_chars),
    )
    add(
        "control_characters",
        gxe.ExpectColumnValuesToNotMatchRegex(column="all_text", regex=CONTROL_CHARS),
    )
    add("bad_score", gxe.ExpectColumnValuesToBeInSet(column="scores_ok", value_set=[True]))
    add(
        "score_order",
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="score_chosen",
            column_B="score_rejected",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
    )
    add("duplicate", gxe.ExpectColumnValuesToBeInSet(column="duplicate", value_set=[False]))
    add(
        "near_duplicate",
        gxe.ExpectColumnValuesToBeInSet(column="near_duplicate", value_set=[False]),
    )
    if cfg.tokenizer:
        add(
            "too_many_tokens",
            gxe.ExpectColumnValuesToBeBetween(column="pair_tokens", max_value=cfg.max_tokens),
        )
        add(
            "identical_after_truncation",
            gxe.ExpectColumnValuesToBeInSet(column="identical_after_truncation", value_set=[False]),
        )
    return suite


class _GXRunner:
    """One ephemeral GX context, suite and checkpoint, run once per chunk."""

    def __init__(self, cfg: ValidationConfig, docs_dir: Path | None):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx  # slow (3-5 s): imported only when validating
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.docs_dir = docs_dir
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        asset = self.context.data_sources.add_pandas("preferences").add_dataframe_asset("pairs")
        batch = asset.add_batch_definition_whole_dataframe("chunk")
        suite = self.context.suites.add(_suite(gx, gxe, cfg))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name="preference_pairs", data=batch, suite=suite)
        )
        if docs_dir is not None:
            self.context.add_data_docs_site(
                "alignment",
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(docs_dir),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        self.checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name="ingest",
                validation_definitions=[definition],
                actions=[],
                result_format={"result_format": "COMPLETE"},
            )
        )

    def run(self, flat: pd.DataFrame) -> tuple[dict[str, list[int]], list[dict]]:
        """Failing row positions per rule, and one result per expectation, for one chunk."""
        outcome = self.checkpoint.run(batch_parameters={"dataframe": flat})
        (validation,) = outcome.run_results.values()
        failing: dict[str, list[int]] = {}
        results = []
        for res in validation.results:
            rule = res.expectation_config.meta["rule"]
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"GX expectation for rule {rule!r} crashed: {res.exception_info}"
                )
            indexes = [int(i) for i in res.result.get("unexpected_index_list") or []]
            failing[rule] = indexes
            results.append(
                {
                    "rule": rule,
                    "expectation": res.expectation_config.type,
                    "success": bool(res.success),
                    "unexpected_count": len(indexes),
                }
            )
        return failing, results

    def build_docs(self) -> Path | None:
        """Data Docs over every chunk's validation result."""
        if self.docs_dir is None:
            return None
        self.context.build_data_docs(site_names=["alignment"])
        docs = self.docs_dir / "index.html"
        return docs if docs.is_file() else None


def _raw(rec: dict) -> str:
    content = {
        k: rec[k] for k in ("prompt", "chosen", "rejected", "score_chosen", "score_rejected")
    }
    return json.dumps(content, ensure_ascii=False, sort_keys=True, default=str)


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
    ):
        self.cfg = cfg
        self.report_dir = Path(report_dir)
        self.build_docs = build_docs
        self.eval_fraction = eval_fraction
        self.tokenizer = load_tokenizer(cfg)
        self.seen = SeenState.empty()
        self._gx: _GXRunner | None = None
        self.records = self.malformed = self.accepted = self.rejected = 0
        self.rule_counts = dict.fromkeys(self._rules(), 0)
        self.malformed_counts: dict[str, int] = {}
        self.expectations: dict[str, dict] = {}
        self._side: dict[int, int] = {}  # normalized prompt -> 1 train, 2 eval, 3 both
        self._stats = {"chosen_longer": 0, "unequal": 0, "log_ratio_sum": 0.0}
        self._chars = {"prompt": 0, "chosen": 0, "rejected": 0}

    def _rules(self) -> list[str]:
        return [r for r in RULES if self.cfg.tokenizer or r not in TOKEN_RULES]

    def validate_chunk(self, records: list[dict], malformed: list[dict]) -> tuple[list, list]:
        """(accepted records, rejected rows with raw text and reasons) for one chunk."""
        failing: dict[str, list[int]] = {}
        flat = None
        if records:
            flat = flatten(records, self.seen, self.tokenizer, self.cfg.max_tokens)
            if self._gx is None:
                docs_dir = self.report_dir / "data_docs" if self.build_docs else None
                self._gx = _GXRunner(self.cfg, docs_dir)
            failing, results = self._gx.run(flat)
            for res in results:
                agg = self.expectations.setdefault(res["rule"], {**res, "unexpected_count": 0})
                agg["success"] = agg["success"] and res["success"]
                agg["unexpected_count"] += res["unexpected_count"]
        reasons: dict[int, list[str]] = {}
        for rule in self._rules():  # fixed order, so reasons read the same every run
            for pos in failing.get(rule, []):
                reasons.setdefault(pos, []).append(rule)
            self.rule_counts[rule] += len(failing.get(rule, []))
        accepted = [rec for i, rec in enumerate(records) if i not in reasons]
        rejected = [
            {**rec, "raw": _raw(rec), "reasons": reasons[i]}
            for i, rec in enumerate(records)
            if i in reasons
        ]
        for bad in malformed:
            rejected.append(
                {
                    **dict.fromkeys(CANONICAL_COLUMNS),
                    "source": bad["source"],
                    "row": bad["row"],
                    "raw": bad["raw"],
                    "reasons": list(bad["reasons"]),
                }
            )
            for reason in bad["reasons"]:
                kind = reason.split(":", 1)[0]
                self.malformed_counts[kind] = self.malformed_counts.get(kind, 0) + 1
        rejected.sort(key=lambda r: (r["row"], r["id"] or ""))
        if len(accepted) + len(rejected) != len(records) + len(malformed):
            raise RuntimeError("validation lost rows: accepted + rejected != records + malformed")
        if flat is not None and accepted:
            self._account(flat.drop(index=list(reasons)), accepted)
        self.records += len(records)
        self.malformed += len(malformed)
        self.accepted += len(accepted)
        self.rejected += len(rejected)
        return accepted, rejected

    def _account(self, flat: pd.DataFrame, accepted: list[dict]) -> None:
        """Set-level statistics over accepted rows: lengths and split sides."""
        c = flat["chosen_chars"].to_numpy()
        r = flat["rejected_chars"].to_numpy()
        self._stats["chosen_longer"] += int((c > r).sum())
        self._stats["unequal"] += int((c != r).sum())
        self._stats["log_ratio_sum"] += float(
            pd.Series(c + 1).map(math.log).sum() - pd.Series(r + 1).map(math.log).sum()
        )
        self._chars["prompt"] += int(flat["prompt_text"].str.len().sum())
        self._chars["chosen"] += int(c.sum())
        self._chars["rejected"] += int(r.sum())
        for norm, rec in zip(flat["norm_key"].tolist(), accepted, strict=True):
            side = 2 if prompt_bucket(rec["prompt"]) < self.eval_fraction else 1
            self._side[norm] = self._side.get(norm, 0) | side

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
            "prompts": len(self._side),
            "eval_prompts": sum(1 for s in self._side.values() if s & 2),
            "leaked_prompts": sum(1 for s in self._side.values() if s == 3),
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
            "rules": RULES,
            "set_rules": SET_RULES,
            "thresholds": cfg.model_dump(mode="json"),
            "docs": str(docs_path) if docs_path else None,
        }
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
    accepted_rows, rejected_rows = validator.validate_chunk(records, malformed)
    report, docs_path = validator.finish()
    accepted = pd.DataFrame(accepted_rows, columns=CANONICAL_COLUMNS)
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
