"""Promotion as a Prefect flow: evaluate the gate, wait for a person if asked, then promote.

With ``require_approval`` the run pauses (Prefect UI: "Resume", with a form for ``Approval``)
until someone approves or rejects; who and why is recorded on the model version. The move
itself holds the global concurrency limit ``promote-<name>`` when it exists (create it with
``prefect gcl create promote-<name> --limit 1``): with a remote MLflow server that is what
serialises promotions from different machines; the workspace file lock covers one machine.
Without the limit Prefect logs a warning and goes on (``strict=False``).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from alignment import promotion, registry
from alignment.config import load_config
from alignment.promotion import Decision, GatePolicy, HumanDecision
from alignment.workspace import Workspace


class Approval(RunInput):
    """A person's answer, entered in the Prefect UI when resuming the paused run."""

    approve: bool
    approver: str
    reason: str = ""


def _table(rows: list[promotion.ConditionResult]) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.4g}"

    lines = ["| condition | candidate | champion | status | detail |", "|---|---|---|---|---|"]
    lines += [
        f"| {r.condition} | {num(r.candidate)} | {num(r.champion)} | {r.status} | {r.detail} |"
        for r in rows
    ]
    return "\n".join(lines)


@task(name="preview-gate", cache_policy=NO_CACHE)
def preview_task(
    name: str, version: str, policy: GatePolicy, production: str | None = None
) -> tuple[bool, str]:
    passed, results = promotion.preview(name, version, policy, production=production)
    return passed, _table(results)


@task(name="promote", cache_policy=NO_CACHE)
def promote_task(
    ws: Workspace,
    name: str,
    version: str,
    policy: GatePolicy,
    policy_path: str,
    actor: str,
    reason: str,
    force: bool,
    approval: HumanDecision | None,
    production: str | None = None,
) -> Decision:
    # strict=False: a missing limit is a logged warning, not a failure (the file lock still holds)
    with concurrency(f"promote-{name}", occupy=1, strict=False):
        return promotion.promote(
            ws,
            name,
            version,
            policy,
            policy_path=policy_path,
            actor=actor,
            reason=reason,
            force=force,
            approval=approval,
            production=production,
        )


@flow(name="promote-model", log_prints=True)
def promote_flow(
    name: str,
    version: str,
    config_path: str | None = None,
    overrides: list[str] | None = None,
    policy_path: str | None = None,
    actor: str = "unknown",
    reason: str = "",
    force: bool = False,
    require_approval: bool = False,
    approval_timeout: int = 86_400,
    poll_interval: int = 10,
) -> Decision:
    """Gate ``name`` version ``version``; with approval, pause for a person before promoting."""
    logger = get_run_logger()
    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    registry.connect(ws, cfg.registry.experiment)
    policy, path = promotion.load_policy(policy_path or cfg.registry.gate_policy)
    # @champion lives on the production model when one is configured for this use case
    production = cfg.registry.production_model if name == cfg.registry.model_name else None
    approval: HumanDecision | None = None
    if require_approval:
        passed, table = preview_task(name, version, policy, production)
        create_markdown_artifact(
            key="gate-preview",
            markdown=f"## {name} version {version}: gate {'passes' if passed else 'FAILS'}\n\n"
            + table,
            description="The gate's evaluation, before a person decides",
        )
        if passed or force:
            logger.info("waiting for a person to approve or reject %s version %s", name, version)
            answer = pause_flow_run(
                wait_for_input=Approval.with_initial_data(
                    description=f"Promote **{name}** version {version} to champion?\n\n"
                    f"Requested by {actor}: {reason or '-'}\n\n{table}",
                    approve=False,
                    approver="",
                ),
                timeout=approval_timeout,
                poll_interval=poll_interval,
            )
            approval = HumanDecision(answer.approve, answer.approver or "unknown", answer.reason)
    decision = promote_task(
        ws, name, str(version), policy, str(Path(path)), actor, reason, force, approval, production
    )
    create_markdown_artifact(
        key="gate-decision",
        markdown=f"```\n{decision.table()}\n```",
        description=f"Promotion decision for {name} version {version}",
    )
    return decision
