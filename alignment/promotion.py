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
import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignment.champion import ChampionSlot, account, refused_as
from alignment.errors import RegistryError
from alignment.gate import (  # noqa: F401  (re-exported: the gate's names lived here)
    BESIDE_WIN_RATES,
    DEFAULT_POLICY,
    JUDGES,
    RM_OPTIMISED,
    Condition,
    ConditionResult,
    GatePolicy,
    evaluate_gate,
    evidence_lines,
    judge_of,
    load_policy,
    refusal_evidence,
)
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
_NAME = re.compile(r"[^A-Za-z0-9_.-]")

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
    # per failed condition: its figures and the candidate's responses behind them
    refusals: list[dict[str, Any]] = field(default_factory=list)
    account: str | None = None  # the account the registry server authenticated (None: no auth)

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
        beside = [
            f"{k} {self.metrics[k]:.4g}"
            + (
                f" (champion {self.metrics[k + '_champion']:.4g})"
                if k + "_champion" in self.metrics
                else ""
            )
            for k in BESIDE_WIN_RATES
            if k in self.metrics
        ]
        if beside:
            lines += ["", "beside the win rates: " + ", ".join(beside)]
        if self.refusals:
            lines += ["", *evidence_lines(self.refusals)]
        lines += [
            "",
            f"policy {self.policy_name} ({self.policy_path}) sha256 {self.policy_hash[:12]}",
            f"win rates judged by the {JUDGES[self.judge][1] if self.judge in JUDGES else '-'}"
            + (f" ({self.judge_caveat})" if self.judge_caveat else ""),
            f"{self.name} version {self.version}: {self.decision.upper()}"
            + (f" by {self.approval.approver}" if self.approval else "")
            + (f" (account {self.account})" if self.account else "")
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


def _evaluate_version(slot: ChampionSlot, version: str, policy: GatePolicy, metrics):
    name = slot.candidates
    candidate = model_version(name, version)
    before = slot.holder(CHAMPION)
    if before == version:
        raise RegistryError(f"{name} version {version} is already the champion")
    cand_metrics = dict(metrics) if metrics is not None else version_metrics(candidate)
    champ_metrics = version_metrics(model_version(name, before)) if before else None
    return candidate, before, cand_metrics, evaluate_gate(policy, cand_metrics, champ_metrics)


def preview(
    name: str,
    version: str | int,
    policy: GatePolicy,
    metrics: dict[str, float] | None = None,
    production: str | None = None,
) -> tuple[bool, list[ConditionResult]]:
    """The gate's verdict against the current champion, recording and moving nothing."""
    slot = ChampionSlot.of(name, production)
    *_, results = _evaluate_version(slot, str(version), policy, metrics)
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
    production: str | None = None,
) -> Decision:
    """Evaluate the gate for ``name`` version ``version`` and move ``champion`` if it passes.

    With ``production`` (a registered model), ``champion`` and ``previous`` live there: the
    candidate is copied into it (alignment.champion). The account that authenticated to the
    server is recorded beside ``actor``; a server that refuses it raises PermissionDenied.

    Under the promotion lock: re-read the champion, evaluate, record the decision (tags and a
    report artifact on the candidate), and on a pass set ``previous`` to the old champion and
    ``champion`` to the candidate. ``force`` promotes despite a failed gate (recorded as
    'forced'); an ``approval`` that says no rejects whatever the gate said.
    """
    version = str(version)
    client = _client()
    slot = ChampionSlot.of(name, production)
    who = account()
    with promotion_lock(ws, name):
        candidate, before, cand_metrics, results = _evaluate_version(slot, version, policy, metrics)
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
            previous_after=before if promoted else slot.holder(PREVIOUS),
            approval=approval,
            metrics=cand_metrics,
            judge=policy.judge,
            judge_caveat=" ".join(policy.judge_caveat.split()),
            account=who,
        )
        if not passed:
            decision.refusals = refusal_evidence(
                results, cand_metrics, _evaluation_evidence(client, candidate.run_id)
            )
        if promoted:
            # the production model first: an account refused there has changed nothing
            if before is not None:
                slot.point(PREVIOUS, before, who)
            moved = slot.point(CHAMPION, version, who)
            if current_alias_version(name, CHALLENGER) == version:
                with refused_as(who, name, "to retire the challenger alias"):
                    client.delete_registered_model_alias(name, CHALLENGER)
            _append_history(
                client,
                slot.model,
                {
                    "action": "promote",
                    "version": version,
                    "previous": before,
                    "decision": label,
                    "actor": actor,
                    "account": who,
                    "production_version": moved if production else None,
                    "approver": approval.approver if approval else None,
                    "reason": reason,
                    "policy_hash": decision.policy_hash,
                    "at": decision.decided_at,
                },
            )
        _record(client, candidate, decision)
    return decision


def _evaluation_evidence(client, run_id: str | None) -> dict[str, Any]:
    """The evaluation suite's evidence.json logged with the candidate's run ({} when absent)."""
    import tempfile

    from mlflow.exceptions import MlflowException

    if not run_id:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, "evaluation/evidence.json", tmp)
            return json.loads(Path(local).read_text(encoding="utf-8"))
        except (OSError, MlflowException, json.JSONDecodeError):
            return {}  # an older run, or one evaluated without the suite: figures only


def _record(client, candidate, decision: Decision) -> None:
    failed = ", ".join(r.condition for r in decision.failed)
    tags = {
        "gate.decision": decision.decision,
        "gate.policy": decision.policy_name,
        "gate.policy_hash": decision.policy_hash,
        "gate.judge": decision.judge,
        "gate.decided_by": decision.approval.approver if decision.approval else decision.actor,
        "gate.requested_by": decision.actor,
        "gate.account": decision.account or "-",
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
    account: str | None = None


def rollback(
    ws: Workspace, name: str, *, actor: str, reason: str = "", production: str | None = None
) -> Rollback:
    """Move ``champion`` back to ``previous``; ``previous`` steps one further back in history.

    Version numbers are the candidates' (``name``), also when ``production`` holds the aliases.
    """
    client = _client()
    slot = ChampionSlot.of(name, production)
    who = account()
    with promotion_lock(ws, name):
        current = slot.holder(CHAMPION)
        target = slot.holder(PREVIOUS)
        if current is None or target is None:
            raise RegistryError(
                f"{name}: nothing to roll back to (champion {current or '-'}, "
                f"previous {target or '-'}); promote a version instead"
            )
        history = read_history(slot.model)
        chain = champion_chain(history)
        # the champion before ``target``, if the history is the chain we expect
        consistent = len(chain) >= 2 and chain[-1] == current and chain[-2] == target
        new_previous = chain[-3] if consistent and len(chain) >= 3 else None
        slot.point(CHAMPION, target, who)
        if new_previous is not None:
            slot.point(PREVIOUS, new_previous, who)
        else:
            slot.clear(PREVIOUS, who)
        at = _now()
        _append_history(
            client,
            slot.model,
            {
                "action": "rollback",
                "version": target,
                "from": current,
                "actor": actor,
                "account": who,
                "reason": reason,
                "at": at,
            },
        )
        for key, value in {
            "rollback.by": actor,
            "rollback.account": who or "-",
            "rollback.at": at,
            "rollback.reason": reason or "-",
            "rollback.to": target,
        }.items():
            client.set_model_version_tag(name, current, key, value)
    return Rollback(name, current, target, new_previous, actor, reason, at, who)


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
