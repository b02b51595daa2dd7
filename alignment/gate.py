"""The gate policy: a versioned YAML list of conditions on a candidate's evaluation metrics.

``evaluate_gate`` is pure (plain dicts in, one result per condition out), so the policy's
semantics are tested without a registry; ``alignment.promotion`` applies it to registered
versions and moves the aliases.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignment.errors import ConfigError

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "configs" / "gates" / "default.yaml"

Op = Literal[">=", ">", "<=", "<", "=="]
_OPS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
}


# --- the gate policy ------------------------------------------------------------------


class Condition(BaseModel):
    """One gate condition: absolute (``op`` + ``value``) or relative to the champion."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="Evaluation metric, as in the version's eval.<metric> tags.")
    name: str | None = Field(None, description="Label in reports; default derived from the rule.")
    op: Op | None = Field(None, description="Absolute: compare the candidate's value with value.")
    value: float | None = Field(None, description="Absolute: the threshold.")
    max_regression: float | None = Field(
        None,
        ge=0,
        description="Relative: candidate may be worse than the champion by at most this.",
    )
    min_improvement: float | None = Field(
        None, description="Relative: candidate must beat the champion by at least this."
    )
    higher_is_better: bool = Field(True, description="Relative: direction of 'better'.")
    required: bool = Field(
        True, description="A missing metric fails the gate; false: skipped and reported."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        self.metric = self.metric.removeprefix("eval.")
        absolute = self.op is not None or self.value is not None
        relative = self.max_regression is not None or self.min_improvement is not None
        if absolute and relative:
            raise ValueError("give either op+value (absolute) or max_regression/min_improvement")
        if absolute and (self.op is None or self.value is None):
            raise ValueError("an absolute condition needs both op and value")
        if not absolute and not relative:
            raise ValueError("give op+value, max_regression or min_improvement")
        if self.max_regression is not None and self.min_improvement is not None:
            raise ValueError("give max_regression or min_improvement, not both")
        return self

    @property
    def kind(self) -> str:
        return "absolute" if self.op is not None else "relative"

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.op is not None:
            return f"{self.metric} {self.op} {self.value:g}"
        better = "higher" if self.higher_is_better else "lower"
        if self.max_regression is not None:
            return f"{self.metric} regression <= {self.max_regression:g} ({better} is better)"
        return f"{self.metric} improvement >= {self.min_improvement:g} ({better} is better)"


# Who scores a win rate, by the prefix of its metric name in the evaluation suite.
JUDGES = {"constitution": ("judge_", "constitution judge"), "reward_model": ("rm_", "reward model")}
RM_OPTIMISED = "rm_optimised_by_candidate"  # 1.0 when the candidate trained against that RM


def judge_of(metric: str) -> str | None:
    """The judge whose win rate `metric` is (None for a metric that is no win rate)."""
    if "win_rate" not in metric:
        return None
    return next((judge for judge, (prefix, _) in JUDGES.items() if metric.startswith(prefix)), "")


class GatePolicy(BaseModel):
    """A versioned list of conditions; all must pass (skipped ones don't count)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("gate", description="Policy name, shown in reports.")
    description: str = Field("", description="What this policy is for.")
    judge: Literal["constitution", "reward_model"] = Field(
        "constitution",
        description="Who scores the win rates this gate reads: the constitution judge, or a "
        "reward model (refused for a candidate trained against it).",
    )
    judge_caveat: str = Field(
        "",
        description="What is known of the judge's quality (its agreement with hand labels, and "
        "against a length baseline); printed with every decision, so nobody reads its win rates "
        "as more than they are.",
    )
    conditions: list[Condition] = Field(min_length=1, description="Conditions, all must pass.")

    @model_validator(mode="after")
    def _one_judge(self) -> GatePolicy:
        for i, cond in enumerate(self.conditions):
            by = judge_of(cond.metric)
            if by is not None and by != self.judge:
                who = f"is scored by the {JUDGES[by][1]}" if by else "names no judge"
                raise ValueError(
                    f"conditions.{i}: {cond.metric} {who}, but the policy's judge is "
                    f"{self.judge}; gate on its {JUDGES[self.judge][0]}* win rates"
                )
        return self

    def bound(self, metric: str, ops: tuple[str, ...]) -> float | None:
        """The tightest absolute bar of `metric` among conditions with one of `ops` (the lowest
        cap for "<=", "<"; the highest floor for ">=", ">"), or None without one."""
        values = [c.value for c in self.conditions
                  if c.metric == metric and c.op in ops and c.value is not None]  # fmt: skip
        if not values:
            return None
        return min(values) if set(ops) <= {"<=", "<"} else max(values)

    def digest(self) -> str:
        """sha256 of the canonical content (independent of comments, order of keys, layout)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def load_yaml_model(path: Path, model: type[BaseModel], what: str):
    """A YAML mapping validated as ``model``; every problem a ConfigError naming the file, the
    dotted field and the rule (``what`` names the kind of file in the messages)."""
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a {what} is a mapping with a 'conditions' list")
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        lines = [f"{path}: invalid {what}"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None


def load_policy(path: Path | str | None = None) -> tuple[GatePolicy, Path]:
    """Read and validate a gate policy YAML (default ``configs/gates/default.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_POLICY
    return load_yaml_model(path, GatePolicy, "gate policy"), path


# --- evaluating it ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionResult:
    condition: str
    metric: str
    kind: str
    status: Literal["passed", "failed", "skipped"]
    candidate: float | None
    champion: float | None
    threshold: str
    detail: str


def evaluate_gate(
    policy: GatePolicy, candidate: dict[str, float], champion: dict[str, float] | None
) -> list[ConditionResult]:
    """Check every condition; pure (no registry), so it is tested on plain dicts."""
    results = []
    for cond in policy.conditions:
        cand = candidate.get(cond.metric)
        champ = champion.get(cond.metric) if champion is not None else None

        def result(status, threshold, detail, cond=cond, cand=cand, champ=champ):
            return ConditionResult(
                cond.label, cond.metric, cond.kind, status, cand, champ, threshold, detail
            )

        missing_status = "failed" if cond.required else "skipped"
        goodhart = _goodhart(policy, cond, candidate) if cand is not None else ""
        if goodhart:
            results.append(result("failed", cond.label.removeprefix(cond.metric).strip(), goodhart))
            continue
        if cond.op is not None:
            threshold = f"{cond.op} {cond.value:g}"
            if cand is None:
                results.append(result(missing_status, threshold, "missing"))
            else:
                ok = _OPS[cond.op](cand, cond.value)
                results.append(result("passed" if ok else "failed", threshold, ""))
            continue
        sign = 1.0 if cond.higher_is_better else -1.0
        if cond.max_regression is not None:
            bound, threshold = -cond.max_regression, f"regression <= {cond.max_regression:g}"
        else:
            bound, threshold = cond.min_improvement, f"improvement >= {cond.min_improvement:g}"
        if cand is None:
            results.append(result(missing_status, threshold, "missing"))
        elif champion is None:
            results.append(result("skipped", threshold, "no champion to compare with"))
        elif champ is None:
            # an older champion predates this metric: nothing to compare with, not a failure
            results.append(result("skipped", threshold, "champion has no value"))
        else:
            improvement = sign * (cand - champ)
            ok = improvement >= bound - 1e-12
            results.append(
                result("passed" if ok else "failed", threshold, f"change {improvement:+.4g}")
            )
    return results


def _goodhart(policy: GatePolicy, cond: Condition, candidate: dict[str, float]) -> str:
    """Why a reward model's win rate cannot count for this candidate ('' when it can)."""
    if policy.judge != "reward_model" or judge_of(cond.metric) != "reward_model":
        return ""
    optimised = candidate.get(RM_OPTIMISED)
    if optimised is None:
        return "unknown whether the candidate was trained against it"
    return "scored by the reward model the candidate was trained against" if optimised else ""


# --- what a refusal shows -----------------------------------------------------------------

# The evaluation suite's evidence (its report's evidence.json, logged with the run) behind a
# metric: sample responses that show what the figure measured.
EVIDENCE_SECTIONS = {
    "unique_response_rate": "degeneration",
    "distinct_2": "degeneration",
    "response_words_mean": "degeneration",
    "sycophancy_shift": "sycophancy",
}
# Figures printed beside the win rates in every decision, refused or not.
BESIDE_WIN_RATES = (*EVIDENCE_SECTIONS, "sycophancy_stance_coverage")


def refusal_evidence(
    results: list[ConditionResult], metrics: dict[str, float], evidence: dict
) -> list[dict]:
    """One entry per failed condition: its figures (with the interval when measured) and, for
    degeneration and sycophancy, the candidate's responses behind them."""
    out = []
    for r in results:
        if r.status != "failed":
            continue
        entry = {
            "condition": r.condition,
            "metric": r.metric,
            "candidate": r.candidate,
            "champion": r.champion,
            "threshold": r.threshold,
            "detail": r.detail,
        }
        low, high = metrics.get(f"{r.metric}_ci_low"), metrics.get(f"{r.metric}_ci_high")
        if low is not None and high is not None:
            entry["ci"] = [low, high]
        section = EVIDENCE_SECTIONS.get(r.metric)
        if section is not None:
            entry["samples"] = evidence.get(section) or {
                "missing": "the evaluation's evidence.json is not in the candidate's run"
            }
        out.append(entry)
    return out


def evidence_lines(refusals: list[dict], width: int = 100) -> list[str]:
    """The refusals as text: which check, with what figures, and a few responses behind it."""

    def quote(text: str) -> str:
        text = " ".join(str(text).split())
        return repr(text if len(text) <= width else text[: width - 3] + "...")

    def num(x) -> str:
        return "-" if x is None else f"{x:.4g}"

    lines, shown = [], set()
    for e in refusals:
        figures = f"candidate {num(e['candidate'])}"
        if "ci" in e:
            figures += f" [{e['ci'][0]:.3g}, {e['ci'][1]:.3g}]"
        if e["champion"] is not None:
            figures += f", champion {num(e['champion'])}"
        if e["detail"]:
            figures += f", {e['detail']}"
        lines.append(f"refused by {e['condition']}: {figures}")
        samples = e.get("samples") or {}
        if samples and "missing" not in samples:
            if EVIDENCE_SECTIONS[e["metric"]] in shown:
                lines.append("    (the answers above)")
                continue
            shown.add(EVIDENCE_SECTIONS[e["metric"]])
        if "missing" in samples:
            lines.append(f"    ({samples['missing']})")
        for item in samples.get("most_repeated", []):
            lines.append(
                f"    {item['count']} of {samples.get('responses', '?')} responses: "
                + quote(item["response"])
            )
        for pair in samples.get("pairs", []):
            lines.append(f"    {pair['id']} (shift {pair['shift']:+.2f}):")
            for side in ("pro", "con"):
                lines.append(
                    f"      {quote(pair[f'{side}_prompt'])} -> {quote(pair[f'{side}_answer'])}"
                    f" (stance {pair[f'{side}_stance']:+.2f})"
                )
    return lines
