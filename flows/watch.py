"""The scheduled watch over the served champion's traces: measure, compare, report, alert.

Each run takes one window of request traces (``watch.window_minutes`` up to now), measures it
(``alignment.watch.measures``) against the champion's evaluation at promotion, checks the
monitoring policy, and leaves: an HTML report, a Prefect artifact, the measures on the model's
watch run in MLflow (step = window index, so the UI plots them over time), and, when a condition
fails, a webhook alert (``retrain.notify_webhook``). With ``rollback: ask`` in the policy an
alert opens a rollback that waits for a person (the Prefect pause form of the promote flow).
Prompts that drew harmful compliance join the red-team prompt sets; the shadow challenger's
online win rate is recorded on its version for the gate.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.flow_runs import pause_flow_run

from alignment import promotion, registry
from alignment.config import PipelineConfig, load_config
from alignment.evaluation.prompts import DEFAULT_PROMPTS as EVAL_PROMPTS
from alignment.watch import report
from alignment.watch.config import load_monitoring_policy
from alignment.watch.loop import collect_red_team
from alignment.watch.measures import load_red_team_prompts, measure_window
from alignment.watch.online import online_win_rate, record_on_challenger, shadow_pairs
from alignment.watch.run import (
    Judges,
    champion_at_promotion,
    check,
    log_window,
    training_prompts,
    window_bounds,
)
from alignment.watch.traces import read_window, shadow_answers
from alignment.workspace import Workspace, atomic_write_text
from flows.promote import Approval
from flows.retrain import notify


def _red_team_files(cfg: PipelineConfig) -> list[Path]:
    from alignment.cai.prompts import DEFAULT_PROMPTS as CAI_PROMPTS

    if cfg.watch.red_team_prompts:
        return list(cfg.watch.red_team_prompts)
    return [cfg.evaluation.prompts or EVAL_PROMPTS, cfg.cai.prompts or CAI_PROMPTS]


@task(name="read-trace-window", cache_policy=NO_CACHE)
def read_task(cfg: PipelineConfig, ws: Workspace, version: str, start: int, end: int):
    experiment_id = registry.connect(ws, cfg.serve.experiment)
    return read_window(
        experiment_id, start, end, cfg.registry.model_name, version, cfg.watch.max_traces
    )


@task(name="measure-window", cache_policy=NO_CACHE)
def measure_task(cfg: PipelineConfig, ws: Workspace, version: str, exchanges, min_pairs: int):
    """The window's measures, and the shadow challenger's online win rate per version."""
    wc = cfg.watch
    registry.connect(ws, cfg.registry.experiment)
    prompts = training_prompts(ws, cfg.ingest.dataset, cfg.registry.model_name, version)
    judges = Judges(
        wc.judge_model or cfg.evaluation.judge_model,
        cfg.evaluation.constitution,
        wc.reward_model,
        cfg.evaluation.device,
        wc.seed,
    )
    try:
        measures = measure_window(
            exchanges,
            load_red_team_prompts(_red_team_files(cfg)),
            wc.red_team_similarity,
            judges.refusals if judges.judge is not None else None,
            judges.reward.score if judges.reward is not None else None,
            prompts,
        )
        online: dict[str, dict] = {}
        if judges.judge is not None:
            registry.connect(ws, cfg.serve.experiment)
            shadows = shadow_answers([e.shadow_trace for e in exchanges if e.shadow_trace])
            by_version = defaultdict(list)
            for pair in shadow_pairs(exchanges, shadows):
                by_version[pair.challenger_version].append(pair)
            for challenger, pairs in by_version.items():
                if challenger != version and len(pairs) >= min_pairs:
                    online[challenger] = online_win_rate(
                        pairs, judges.compare, wc.bootstrap_samples, seed=wc.seed
                    )
    finally:
        judges.close()
    return measures, online


@flow(name="rollback-on-alert", log_prints=True)
def rollback_flow(
    name: str,
    reason: str,
    config_path: str | None = None,
    overrides: list[str] | None = None,
    approval_timeout: int = 86_400,
    poll_interval: int = 10,
) -> dict:
    """Pause for a person to approve moving ``champion`` back to ``previous``; then move it."""
    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    answer = pause_flow_run(
        wait_for_input=Approval.with_initial_data(
            description=f"The watch raised an alert on **{name}**: {reason}\n\n"
            "Roll the champion back to the previous version?",
            approve=False,
            approver="",
        ),
        timeout=approval_timeout,
        poll_interval=poll_interval,
    )
    if not answer.approve:
        print(f"rollback of {name} declined by {answer.approver or 'unknown'}: {answer.reason}")
        return {"rolled_back": False, "by": answer.approver, "reason": answer.reason}
    registry.connect(ws, cfg.registry.experiment)
    back = promotion.rollback(
        ws,
        name,
        actor=answer.approver or "unknown",
        reason=f"watch alert: {reason}; {answer.reason}".rstrip("; "),
        production=cfg.registry.production_model,
    )
    print(f"rolled {name} back from version {back.from_version} to {back.to_version}")
    return {"rolled_back": True, "from": back.from_version, "to": back.to_version}


@flow(name="watch", log_prints=True)
def watch_flow(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    end_ms: int | None = None,
    window_minutes: float | None = None,
    poll_interval: int = 10,
) -> dict:
    """Watch one window of the champion's traces; report, and alert past the policy."""
    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    wc, name = cfg.watch, cfg.registry.model_name
    policy, policy_path = load_monitoring_policy(wc.policy)
    registry.connect(ws, cfg.registry.experiment)
    version, champion_metrics = champion_at_promotion(name, cfg.registry.production_model)
    start, end = window_bounds(window_minutes or wc.window_minutes, end_ms)
    exchanges = read_task(cfg, ws, version, start, end)
    measures, online = measure_task(cfg, ws, version, exchanges, policy.min_shadow_pairs)
    conditions, alerts, status = check(policy, measures.metrics, champion_metrics)
    harmful = measures.harmful_compliance()
    folder = wc.red_team_dir or ws.root / "red_team"
    sets = collect_red_team(folder, harmful, cfg.cai.prompts, cfg.evaluation.prompts)
    registry.connect(ws, cfg.registry.experiment)
    for challenger, rate in online.items():
        record_on_challenger(name, challenger, rate, f"{start}-{end}")
    result = {
        "model": name,
        "champion_version": version,
        "start_ms": start,
        "end_ms": end,
        "policy": f"{policy.name} ({policy_path})",
        "refusal_detector": measures.refusal_detector,
        "metrics": measures.metrics,
        "champion_metrics": {k: v for k, v in champion_metrics.items() if k in measures.metrics},
        "conditions": conditions,
        "alerts": alerts,
        "status": status,
        "harmful_traces": [e.trace_id for e in harmful],
        "online": {v: r for v, r in online.items()},
        "red_team": {
            "new": sets.new,
            "collected": sets.collected,
            "cai_prompts": str(sets.cai_prompts) if sets.cai_prompts else None,
            "eval_prompts": str(sets.eval_prompts) if sets.eval_prompts else None,
        },
    }
    page = ws.reports / f"watch-{name}-{end}.html"
    result["report"] = str(atomic_write_text(page, report.html_report(result)))
    experiment_id = registry.connect(ws, wc.experiment)
    flat_online = {f"{k}_v{v}": x for v, r in online.items() for k, x in r.items()}
    result["mlflow_run_id"], result["step"] = log_window(
        experiment_id, {**result, "online": flat_online}, page
    )
    print(report.text(result))
    create_markdown_artifact(
        key=re.sub(r"[^a-z0-9-]", "-", f"watch-{name}".lower()),
        markdown=report.markdown(result) + f"\nReport: `{page}`\n",
        description=f"Watch of {name}'s served champion over one window",
    )
    if alerts:
        message = f"{name} version {version}: " + "; ".join(alerts)
        notify(cfg, "watch-alert", message, version=version, report=str(page), window=[start, end])
        if policy.rollback == "ask":
            get_run_logger().warning("opening a rollback of %s for approval", name)
            result["rollback"] = rollback_flow(
                name, message, config_path, overrides, wc.approval_timeout_s, poll_interval
            )
    return result
