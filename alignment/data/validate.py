"""Validate canonical preference records with a Great Expectations suite built in code.

Row-level rules quarantine rows (each rejected row carries every rule it broke); set-level
rules (rejected fraction, minimum accepted rows) mark the report as failed, and the caller
decides to raise. Invariant: ``len(accepted) + len(rejected) == len(records) + len(malformed)``
(records, not input rows: a ranked input row expands to several records, each judged alone).
"""

from __future__ import annotations

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
    "duplicate": "the same prompt and pair appeared earlier in the file",
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


def flatten(records: list[dict]) -> pd.DataFrame:
    """One row per record with the columns the expectations look at (index = record position)."""
    rows = []
    seen: set[str] = set()
    for rec in records:
        prompt, chosen, rejected = rec["prompt"], rec["chosen"], rec["rejected"]
        roles = [m["role"] for m in prompt]
        all_turns = _texts(prompt) + _texts(chosen) + _texts(rejected)
        rows.append(
            {
                "prompt_text": "\n".join(_texts(prompt)),
                "chosen_text": "\n".join(_texts(chosen)),
                "rejected_text": "\n".join(_texts(rejected)),
                "prompt_min_chars": min((len(t.strip()) for t in _texts(prompt)), default=0),
                "chosen_chars": len("".join(_texts(chosen)).strip()),
                "rejected_chars": len("".join(_texts(rejected)).strip()),
                "prompt_roles_ok": bool(roles)
                and roles[-1] == "user"
                and all(r in VALID_PROMPT_ROLES for r in roles),
                "chosen_role": _turn_shape(chosen),
                "rejected_role": _turn_shape(rejected),
                "max_turn_chars": max((len(t) for t in all_turns), default=0),
                "all_text": "\n".join(all_turns),
                "scores_ok": _score_ok(rec["score_chosen"]) and _score_ok(rec["score_rejected"]),
                "score_chosen": _as_float(rec["score_chosen"]),
                "score_rejected": _as_float(rec["score_rejected"]),
                "duplicate": rec["id"] in seen,
            }
        )
        seen.add(rec["id"])
    frame = pd.DataFrame(rows, index=pd.RangeIndex(len(rows)))
    for col in ("score_chosen", "score_rejected"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame


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
    return suite


def _run_gx(
    flat: pd.DataFrame, cfg: ValidationConfig, docs_dir: Path | None
) -> tuple[dict[str, list[int]], list[dict], Path | None]:
    """Run the suite; return failing record positions per rule, per-expectation results, docs."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # slow (3-5 s): imported only when validating
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("preferences").add_dataframe_asset("pairs")
    batch = asset.add_batch_definition_whole_dataframe("all_rows")
    suite = context.suites.add(_suite(gx, gxe, cfg))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="preference_pairs", data=batch, suite=suite)
    )
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(
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
        actions.append(
            gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["alignment"])
        )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="ingest",
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "COMPLETE"},
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": flat})
    (validation,) = outcome.run_results.values()
    failing: dict[str, list[int]] = {}
    summary = []
    for res in validation.results:
        rule = res.expectation_config.meta["rule"]
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX expectation for rule {rule!r} crashed: {res.exception_info}")
        indexes = [int(i) for i in res.result.get("unexpected_index_list") or []]
        failing[rule] = indexes
        summary.append(
            {
                "rule": rule,
                "expectation": res.expectation_config.type,
                "success": bool(res.success),
                "unexpected_count": len(indexes),
            }
        )
    summary.sort(key=lambda s: list(RULES).index(s["rule"]))
    docs = docs_dir / "index.html" if docs_dir is not None else None
    return failing, summary, docs if docs is not None and docs.is_file() else None


def _raw(rec: dict) -> str:
    content = {
        k: rec[k] for k in ("prompt", "chosen", "rejected", "score_chosen", "score_rejected")
    }
    return json.dumps(content, ensure_ascii=False, sort_keys=True, default=str)


def validate_records(
    records: list[dict],
    malformed: list[dict],
    cfg: ValidationConfig,
    report_dir: Path,
    build_docs: bool = True,
) -> ValidationResult:
    """Run row-level and set-level checks; quarantine failing rows with every rule they broke.

    ``report["passed"]`` is False when a set-level rule fails; the caller raises.
    """
    report_dir = Path(report_dir)
    failing: dict[str, list[int]] = {rule: [] for rule in RULES}
    expectations: list[dict] = []
    docs_path: Path | None = None
    if records:
        flat = flatten(records)
        docs_dir = report_dir / "data_docs" if build_docs else None
        failing, expectations, docs_path = _run_gx(flat, cfg, docs_dir)
    reasons: dict[int, list[str]] = {}
    for rule in RULES:  # fixed order, so reasons read the same every run
        for pos in failing.get(rule, []):
            reasons.setdefault(pos, []).append(rule)

    accepted_rows = [rec for i, rec in enumerate(records) if i not in reasons]
    rejected_rows = [
        {**rec, "raw": _raw(rec), "reasons": reasons[i]}
        for i, rec in enumerate(records)
        if i in reasons
    ]
    for bad in malformed:
        rejected_rows.append(
            {
                **dict.fromkeys(CANONICAL_COLUMNS),
                "source": bad["source"],
                "row": bad["row"],
                "raw": bad["raw"],
                "reasons": list(bad["reasons"]),
            }
        )
    rejected_rows.sort(key=lambda r: (r["row"], r["id"] or ""))
    accepted = pd.DataFrame(accepted_rows, columns=CANONICAL_COLUMNS)
    rejected = pd.DataFrame(rejected_rows, columns=REJECTED_COLUMNS)
    total = len(records) + len(malformed)
    assert len(accepted) + len(rejected) == total, "every input record is accepted or rejected"

    rule_counts = {rule: len(failing.get(rule, [])) for rule in RULES}
    malformed_counts: dict[str, int] = {}
    for bad in malformed:
        for reason in bad["reasons"]:
            kind = reason.split(":", 1)[0]
            malformed_counts[kind] = malformed_counts.get(kind, 0) + 1
    fraction = len(rejected) / total if total else 0.0
    failures = []
    if fraction > cfg.max_rejected_fraction:
        failures.append(
            f"max_rejected_fraction: {len(rejected)} of {total} rows rejected "
            f"({fraction:.1%} > {cfg.max_rejected_fraction:.1%})"
        )
    if len(accepted) < cfg.min_rows:
        failures.append(f"min_rows: {len(accepted)} rows accepted, fewer than {cfg.min_rows}")
    report = {
        "passed": not failures,
        "failures": failures,
        "rows_in": total,
        "records": len(records),
        "malformed": len(malformed),
        "accepted": len(accepted),
        "rejected": len(rejected),
        "rejected_fraction": round(fraction, 6),
        "rule_failures": rule_counts,
        "malformed_reasons": dict(sorted(malformed_counts.items())),
        "expectations": expectations,
        "rules": RULES,
        "thresholds": cfg.model_dump(mode="json"),
        "docs": str(docs_path) if docs_path else None,
    }
    if build_docs and docs_path is None:
        docs_path = _write_html_summary(report_dir / "validation.html", report)
        report["docs"] = str(docs_path)
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
