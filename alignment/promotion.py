"""Gated promotion: a versioned gate policy decides; the ``champion`` alias moves only if it passes.

A decision is always recorded on the candidate version (``gate.*`` tags plus a JSON report
artifact in the version's run), and every move of ``champion`` (promotion or rollback) is
appended to the registered model's ``promotion.history`` tag, so ``rollback`` can walk back
several steps and ``models show`` can print who moved what, when and why.

Promotions of one registered model serialise on a file lock in the workspace
(``locks/promote-<name>.lock``). That is enough for the embedded store and for several
processes on one machine. With a remote MLflow server, promotions may run on different
machines: ``flows/promote.py`` then also holds the Prefect global concurrency limit
``promote-<name>`` (create it once: ``prefect gcl create promote-<name> --limit 1``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignment.errors import ConfigError, RegistryError
from alignment.registry import (
    CHALLENGER,
    CHAMPION,
    HISTORY_TAG,
    PREVIOUS,
    current_alias_version,
    describe_version,
    is_not_found,
    model_version,
    unreachable,
    version_metrics,
)
from alignment.workspace import Workspace, file_lock

HISTORY_LIMIT = 200  # entries kept on the registered model; a tag holds at most 100k characters
DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "configs" / "gates" / "default.yaml"
_NAME = re.compile(r"[^A-Za-z0-9_.-]")

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

    def digest(self) -> str:
        """sha256 of the canonical content (independent of comments, order of keys, layout)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def load_policy(path: Path | str | None = None) -> tuple[GatePolicy, Path]:
    """Read and validate a gate policy YAML (default ``configs/gates/default.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_POLICY
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read gate policy ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a gate policy is a mapping with a 'conditions' list")
    try:
        return GatePolicy.model_validate(tree), path
    except ValidationError as exc:
        lines = [f"{path}: invalid gate policy"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None


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


# --- decisions --------------------------------------------------------------------------


@dataclass(frozen=True)
class HumanDecision:
    """A person's answer to an approval request (from the Prefect UI)."""

    approve: bool
    approver: str
    reason: str = ""


@dataclass
class Decision:
    name: str
    version: str
    passed: bool  # the gate's verdict
    promoted: bool  # whether champion moved (a forced promotion moves it despite the gate)
    decision: Literal["passed", "rejected", "forced"]
    results: list[ConditionResult]
    policy_name: str
    policy_path: str
    policy_hash: str
    actor: str
    reason: str
    decided_at: str
    champion_before: str | None
    champion_after: str | None
    previous_after: str | None
    approval: HumanDecision | None = None
    report_artifact: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    judge: str = ""  # who scored the win rates the gate read (the policy's judge)
    judge_caveat: str = ""  # what the policy says of that judge's quality

    @property
    def failed(self) -> list[ConditionResult]:
        return [r for r in self.results if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """One screen: every condition with its values, then the verdict."""
        lines = [
            f"{'condition':52s} {'candidate':>10s} {'champion':>10s}  {'status':8s} detail",
        ]
        for r in self.results:
            cand = "-" if r.candidate is None else f"{r.candidate:.4g}"
            champ = "-" if r.champion is None else f"{r.champion:.4g}"
            lines.append(
                f"{r.condition[:52]:52s} {cand:>10s} {champ:>10s}  {r.status:8s} {r.detail}"
            )
        lines += [
            "",
            f"policy {self.policy_name} ({self.policy_path}) sha256 {self.policy_hash[:12]}",
            f"win rates judged by the {JUDGES[self.judge][1] if self.judge in JUDGES else '-'}"
            + (f" ({self.judge_caveat})" if self.judge_caveat else ""),
            f"{self.name} version {self.version}: {self.decision.upper()}"
            + (f" by {self.approval.approver}" if self.approval else "")
            + f"; champion {self.champion_before or '-'} -> {self.champion_after or '-'}"
            + (f", previous {self.previous_after}" if self.previous_after else ""),
        ]
        return "\n".join(lines)


@contextlib.contextmanager
def promotion_lock(ws: Workspace, name: str, timeout: float = 600.0) -> Iterator[Path]:
    """Hold ``ws.root/locks/promote-<name>.lock`` (flock: per open file, so threads serialise too)."""
    path = ws.root / "locks" / f"promote-{_NAME.sub('_', name)}.lock"
    lock = file_lock(path, timeout)
    try:
        held = lock.__enter__()
    except TimeoutError:
        raise RegistryError(
            f"another promotion of {name!r} holds {path} for over {timeout:.0f} s"
        ) from None
    try:
        yield held
    finally:
        lock.__exit__(None, None, None)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def read_history(name: str) -> list[dict[str, Any]]:
    """Every recorded move of ``champion`` for ``name``, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        raw = _client().get_registered_model(name).tags.get(HISTORY_TAG)
    except MlflowException as exc:
        if not is_not_found(exc):
            raise unreachable(exc) from exc
        raise RegistryError(f"no registered model named {name!r}") from exc
    return json.loads(raw) if raw else []


def _append_history(client, name: str, entry: dict[str, Any]) -> None:
    history = [*read_history(name)[-(HISTORY_LIMIT - 1) :], entry]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history, separators=(",", ":")))


def champion_chain(history: list[dict[str, Any]]) -> list[str]:
    """Champions in order, oldest first, after replaying promotions and rollbacks."""
    chain: list[str] = []
    for entry in history:
        if entry["action"] == "promote":
            if not chain and entry.get("previous"):
                chain.append(entry["previous"])  # the first champion came from registration
            chain.append(entry["version"])
        elif entry["action"] == "rollback" and chain:
            chain.pop()
    return chain


def _evaluate_version(name: str, version: str, policy: GatePolicy, metrics):
    candidate = model_version(name, version)
    before = current_alias_version(name, CHAMPION)
    if before == version:
        raise RegistryError(f"{name} version {version} is already the champion")
    cand_metrics = dict(metrics) if metrics is not None else version_metrics(candidate)
    champ_metrics = version_metrics(model_version(name, before)) if before else None
    return candidate, before, cand_metrics, evaluate_gate(policy, cand_metrics, champ_metrics)


def preview(
    name: str, version: str | int, policy: GatePolicy, metrics: dict[str, float] | None = None
) -> tuple[bool, list[ConditionResult]]:
    """The gate's verdict against the current champion, recording and moving nothing."""
    *_, results = _evaluate_version(name, str(version), policy, metrics)
    return not any(r.status == "failed" for r in results), results


def promote(
    ws: Workspace,
    name: str,
    version: str | int,
    policy: GatePolicy,
    *,
    policy_path: Path | str = "",
    actor: str,
    reason: str = "",
    force: bool = False,
    metrics: dict[str, float] | None = None,
    approval: HumanDecision | None = None,
) -> Decision:
    """Evaluate the gate for ``name`` version ``version`` and move ``champion`` if it passes.

    Under the promotion lock: re-read the champion, evaluate, record the decision (tags and a
    report artifact on the candidate), and on a pass set ``previous`` to the old champion and
    ``champion`` to the candidate. ``force`` promotes despite a failed gate (recorded as
    'forced'); an ``approval`` that says no rejects whatever the gate said.
    """
    version = str(version)
    client = _client()
    with promotion_lock(ws, name):
        candidate, before, cand_metrics, results = _evaluate_version(name, version, policy, metrics)
        passed = not any(r.status == "failed" for r in results)
        approved = approval is None or approval.approve
        promoted = approved and (passed or force)
        label = "passed" if passed and approved else ("forced" if promoted else "rejected")
        decision = Decision(
            name=name,
            version=version,
            passed=passed,
            promoted=promoted,
            decision=label,
            results=results,
            policy_name=policy.name,
            policy_path=str(policy_path),
            policy_hash=policy.digest(),
            actor=actor,
            reason=reason,
            decided_at=_now(),
            champion_before=before,
            champion_after=version if promoted else before,
            previous_after=before if promoted else current_alias_version(name, PREVIOUS),
            approval=approval,
            metrics=cand_metrics,
            judge=policy.judge,
            judge_caveat=" ".join(policy.judge_caveat.split()),
        )
        if promoted:
            if before is not None:
                client.set_registered_model_alias(name, PREVIOUS, before)
            client.set_registered_model_alias(name, CHAMPION, version)
            if current_alias_version(name, CHALLENGER) == version:
                client.delete_registered_model_alias(name, CHALLENGER)
            _append_history(
                client,
                name,
                {
                    "action": "promote",
                    "version": version,
                    "previous": before,
                    "decision": label,
                    "actor": actor,
                    "approver": approval.approver if approval else None,
                    "reason": reason,
                    "policy_hash": decision.policy_hash,
                    "at": decision.decided_at,
                },
            )
        _record(client, candidate, decision)
    return decision


def _record(client, candidate, decision: Decision) -> None:
    failed = ", ".join(r.condition for r in decision.failed)
    tags = {
        "gate.decision": decision.decision,
        "gate.policy": decision.policy_name,
        "gate.policy_hash": decision.policy_hash,
        "gate.judge": decision.judge,
        "gate.decided_by": decision.approval.approver if decision.approval else decision.actor,
        "gate.requested_by": decision.actor,
        "gate.decided_at": decision.decided_at,
        "gate.reason": decision.reason or "-",
        "gate.failed": failed or "-",
        "gate.champion_before": decision.champion_before or "-",
    }
    if decision.approval is not None:
        tags["gate.approval"] = "approved" if decision.approval.approve else "rejected"
        tags["gate.approval_reason"] = decision.approval.reason or "-"
    for key, value in tags.items():
        client.set_model_version_tag(decision.name, decision.version, key, value[:5000])
    if candidate.run_id:
        artifact = f"gate/decision-{decision.decided_at.replace(':', '')}-{decision.decision}.json"
        client.log_dict(candidate.run_id, decision.to_dict(), artifact)
        decision.report_artifact = f"runs:/{candidate.run_id}/{artifact}"
        client.set_model_version_tag(
            decision.name, decision.version, "gate.report", decision.report_artifact
        )
    describe_version(decision.name, decision.version)


@dataclass(frozen=True)
class Rollback:
    name: str
    from_version: str
    to_version: str
    previous_after: str | None
    actor: str
    reason: str
    at: str


def rollback(ws: Workspace, name: str, *, actor: str, reason: str = "") -> Rollback:
    """Move ``champion`` back to ``previous``; ``previous`` steps one further back in history."""
    client = _client()
    with promotion_lock(ws, name):
        current = current_alias_version(name, CHAMPION)
        target = current_alias_version(name, PREVIOUS)
        if current is None or target is None:
            raise RegistryError(
                f"{name}: nothing to roll back to (champion {current or '-'}, "
                f"previous {target or '-'}); promote a version instead"
            )
        history = read_history(name)
        chain = champion_chain(history)
        # the champion before ``target``, if the history is the chain we expect
        consistent = len(chain) >= 2 and chain[-1] == current and chain[-2] == target
        new_previous = chain[-3] if consistent and len(chain) >= 3 else None
        client.set_registered_model_alias(name, CHAMPION, target)
        if new_previous is not None:
            client.set_registered_model_alias(name, PREVIOUS, new_previous)
        else:
            client.delete_registered_model_alias(name, PREVIOUS)
        at = _now()
        _append_history(
            client,
            name,
            {
                "action": "rollback",
                "version": target,
                "from": current,
                "actor": actor,
                "reason": reason,
                "at": at,
            },
        )
        for key, value in {
            "rollback.by": actor,
            "rollback.at": at,
            "rollback.reason": reason or "-",
            "rollback.to": target,
        }.items():
            client.set_model_version_tag(name, current, key, value)
    return Rollback(name, current, target, new_previous, actor, reason, at)


# --- rebuilding a version from its lineage ---------------------------------------------


@dataclass(frozen=True)
class RebuildPlan:
    name: str
    version: str
    run_id: str
    config_path: Path
    data_version: str
    dataset: str
    data_found: bool
    git_commit: str
    git_commit_now: str
    overrides: list[str]


def plan_rebuild(ws: Workspace, name: str, version: str, dest: Path) -> RebuildPlan:
    """Recover the config artifact and data version a model version was trained from."""
    from alignment.data.version import find_version
    from alignment.registry import git_commit

    client = _client()
    mv = model_version(name, version)
    tags = mv.tags
    if not mv.run_id:
        raise RegistryError(f"{name} version {version} has no MLflow run to rebuild from")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        local = client.download_artifacts(mv.run_id, "config/config.yaml", str(dest))
    except Exception as exc:  # MLflow raises OSError or MlflowException depending on the store
        raise RegistryError(
            f"{name} version {version}: run {mv.run_id} has no config/config.yaml artifact ({exc})"
        ) from exc
    data_version = tags.get("data_version", "")
    dataset = tags.get("dataset", "preferences")
    found = bool(data_version) and find_version(ws, dataset, data_version) is not None
    return RebuildPlan(
        name=name,
        version=str(version),
        run_id=mv.run_id,
        config_path=Path(local),
        data_version=data_version,
        dataset=dataset,
        data_found=found,
        git_commit=tags.get("git_commit", "unknown"),
        git_commit_now=git_commit(),
        overrides=[f"workspace.root={ws.root}"],
    )
