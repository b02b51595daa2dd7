"""Commands that run Prefect flows: ``demo`` and ``flows pipeline|ingest|retrain|...``."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from alignment.cli.common import (
    add_common,
    add_format,
    config_from,
    overrides_from,
    tool_path,
    write_json,
)
from alignment.errors import AlignmentError


def cmd_pipeline(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from flows.pipeline import alignment_pipeline

    overrides = overrides_from(args)
    started = time.perf_counter()
    result = alignment_pipeline(config_path=args.config, overrides=overrides)
    _print_pipeline_result(cfg, result, time.perf_counter() - started)
    write_json(
        args.json,
        {
            "run_dir": str(result.run_dir),
            "data_version": result.data_version.to_dict(),
            "accepted": result.ingest.accepted,
            "rejected": result.ingest.rejected,
            "evaluation": result.evaluation,
            "registered": result.registered.__dict__,
            "mlflow_run_id": result.mlflow_run_id,
            "stage_seconds": result.stage_seconds,
        },
    )
    return 0


def _print_pipeline_result(cfg, result, wall: float) -> None:
    from alignment.gate import load_policy
    from alignment.workspace import Workspace

    ws = Workspace.from_config(cfg.workspace)
    reg = result.registered
    policy, policy_path = load_policy(cfg.registry.gate_policy)
    gate = (
        f"{reg.decision} (no champion before: the absolute conditions decided)"
        if reg.decision
        else "not run: a champion exists (alignment models promote compares the two)"
    )
    lines = [
        "",
        f"Pipeline finished in {wall:.0f} s.",
        "",
        f"  data version      {result.data_version.id}  (tag {result.data_version.tag}, "
        f"{'new' if result.data_version.created else 'already versioned'})",
        f"  data repository   {ws.data_repo}   (DVC remote: {result.data_version.remote})",
        f"  accepted/rejected {result.ingest.accepted} / {result.ingest.rejected} rows",
        f"  validation report {result.data_version.report_path}  (versioned with the data)",
        f"  rejected rows     {result.data_version.rejected_path}  (each with the rules it broke)",
    ]
    if result.ingest.docs_path:
        lines.append(f"  data docs         {result.ingest.docs_path}")
    lines += [
        f"  run folder        {result.run_dir}",
        f"  mlflow run        {result.mlflow_run_id}",
        f"  registered model  {reg.name} version {reg.version}, alias @{reg.alias}  ({reg.model_uri})",
        f"  gate policy       {policy.name}  ({policy_path})",
        f"  gate decision     {gate}",
        "",
        "  evaluation (held-out pairs):",
        *[f"    {k:28s} {v:.4f}" for k, v in result.evaluation.items()],
        "",
        "  stage times (s):",
        *[f"    {k:28s} {v:.1f}" for k, v in result.stage_seconds.items()],
        "",
        "Open the UIs on what was produced:",
        f"  {tool_path('mlflow')} ui --backend-store-uri {ws.tracking_uri} --port 5000",
    ]
    if "PREFECT_API_URL" not in os.environ:
        lines.append(
            f"  PREFECT_HOME={os.environ.get('PREFECT_HOME')} "
            f"{tool_path('prefect')} server start --port 4200"
        )
    lines.append("and ask the registered policy something:")
    lines.append(
        f"  {tool_path('python')} -c \"import mlflow; mlflow.set_tracking_uri('{ws.tracking_uri}'); "
        f"print(mlflow.pyfunc.load_model('models:/{reg.name}@{reg.alias}').predict(['What is 2 plus 3?']))\""
    )
    print("\n".join(lines))


def cmd_flow_ingest(args: argparse.Namespace) -> int:
    config_from(args)
    from flows.ingest import ingest_flow

    overrides = overrides_from(args)
    outcome = ingest_flow(config_path=args.config, overrides=overrides, input=args.input)
    print(outcome["summary"])
    write_json(args.json, outcome)
    return 0 if outcome["passed"] else 3


def cmd_flow_retrain(args: argparse.Namespace) -> int:
    config_from(args)
    from flows.retrain import retrain

    outcome = retrain(config_path=args.config, overrides=overrides_from(args), landing=args.landing)
    write_json(args.json, outcome)
    return 0


def cmd_flow_label_noise(args: argparse.Namespace) -> int:
    config_from(args)
    from flows.label_noise import label_noise_review_flow

    outcome = label_noise_review_flow(
        config_path=args.config,
        overrides=overrides_from(args),
        data_version=args.data_version,
        review_csv=args.review_csv,
        folds=args.folds,
    )
    write_json(args.json, outcome)
    return 0


def cmd_flow_serve_retrain(args: argparse.Namespace) -> int:
    """Serve the retrain flow as a scheduled deployment (one per use case) until stopped."""
    cfg = config_from(args)
    from prefect import serve

    from flows.retrain import retrain

    cron = args.cron or cfg.retrain.cron
    if not cron:
        raise AlignmentError("no schedule: pass --cron or set retrain.cron in the config")
    deployment = retrain.to_deployment(
        name=f"retrain-{cfg.registry.model_name}",
        cron=cron,
        parameters={
            "config_path": str(Path(args.config).resolve()) if args.config else None,
            "overrides": overrides_from(args),
            "landing": args.landing,
        },
        # one retrain per use case at a time; the flow's own lock covers manual runs too
        concurrency_limit=1,
        tags=["retrain", cfg.registry.model_name],
    )
    print(f"serving retrain-{cfg.registry.model_name} on '{cron}'; Ctrl-C stops")
    serve(deployment)
    return 0


def cmd_flow_cai(args: argparse.Namespace) -> int:
    config_from(args)
    from flows.cai import cai_flow

    overrides = overrides_from(args)
    result = cai_flow(config_path=args.config, overrides=overrides)
    models = {m: str(t.output_dir) for m, t in result.training.items()}
    print(
        f"constitution {result.constitution_hash}: SFT data {result.sft_data.id}, "
        f"preference data {result.preference_data.id}, models {models}"
    )
    print(
        f"SL: {result.sl.rows} SFT rows of {result.sl.prompts} prompts; {result.sl.empty_summary()}"
    )
    print(f"RL: {result.rl.pairs} AI-labelled pairs; {result.rl.skipped_summary()}")
    print(f"audit {result.sl.audit_path}")
    write_json(
        args.json,
        {
            "run_dir": str(result.run_dir),
            "constitution_hash": result.constitution_hash,
            "sl": {**result.sl.__dict__},
            "sft_data": result.sft_data.to_dict(),
            "rl": {**result.rl.__dict__},
            "preference_data": result.preference_data.to_dict(),
            "models": models,
            "stage_seconds": result.stage_seconds,
        },
    )
    return 0


def register(sub) -> None:
    """``alignment demo`` and ``alignment flows ...``."""
    p = sub.add_parser("demo", help="run the whole pipeline on the demo data and a tiny model")
    add_common(p)
    p.set_defaults(func=cmd_pipeline, config_default="configs/demo.yaml")
    flows = sub.add_parser("flows", help="run Prefect flows").add_subparsers(
        dest="flow", required=True
    )
    p = flows.add_parser(
        "pipeline", help="ingest → validate → version → SFT → DPO → evaluate → register"
    )
    add_common(p)
    p.add_argument("--data-version", help="train on this recorded data version (skip ingest)")
    p.set_defaults(func=cmd_pipeline)
    p = flows.add_parser("retrain", help="retrain if fresh data landed; promote through the gate")
    add_common(p)
    p.add_argument("--landing", help="landing folder or file (overrides retrain.landing)")
    p.set_defaults(func=cmd_flow_retrain)
    p = flows.add_parser("serve-retrain", help="serve the retrain flow on a cron schedule")
    add_common(p)
    p.add_argument("--landing", help="landing folder or file (overrides retrain.landing)")
    p.add_argument("--cron", help="schedule, e.g. '0 3 * * *' (overrides retrain.cron)")
    p.set_defaults(func=cmd_flow_serve_retrain)
    p = flows.add_parser("ingest", help="ingest → validate → version, with a summary artifact")
    add_common(p)
    p.add_argument("--input", "-i", help="raw file or folder (overrides ingest.input)")
    add_format(p)
    p.set_defaults(func=cmd_flow_ingest)
    p = flows.add_parser(
        "label-noise",
        help="flag likely mislabelled pairs, pause for a reviewer, version the accepted flips",
    )
    add_common(p)
    p.add_argument("--data-version", help="the version to review (default: the newest)")
    p.add_argument("--review-csv", help="a filled review sheet: answer without pausing")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.set_defaults(func=cmd_flow_label_noise)
    p = flows.add_parser("cai", help="constitutional AI: SL → SFT → AI feedback → versioned pairs")
    add_common(p)
    p.set_defaults(func=cmd_flow_cai)
