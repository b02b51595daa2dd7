"""The platform's one console script: ``alignment <stage> ...``. Parses, then calls a stage."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from alignment.errors import AlignmentError

QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    # the embedded Prefect API migrates its database on first start: slow on 2 busy cores
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}


def _environment(workspace_root: Path) -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Prefect's embedded API keeps its database in the workspace, beside MLflow's
    if "PREFECT_API_URL" not in os.environ:
        os.environ.setdefault("PREFECT_HOME", str(workspace_root / "prefect"))
        Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


def _config(args: argparse.Namespace):
    from alignment.config import load_config

    overrides = list(args.set or [])
    if getattr(args, "workspace", None):
        overrides.append(f"workspace.root={args.workspace}")
    cfg = load_config(args.config, overrides)
    _environment(cfg.workspace.root.expanduser().resolve())
    return cfg


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        from alignment.workspace import atomic_write_text

        atomic_write_text(Path(path), json.dumps(payload, indent=2, default=str) + "\n")


# --- commands -------------------------------------------------------------------------


def cmd_pipeline(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from flows.pipeline import alignment_pipeline

    overrides = list(args.set or [])
    if args.workspace:
        overrides.append(f"workspace.root={args.workspace}")
    started = time.perf_counter()
    result = alignment_pipeline(config_path=args.config, overrides=overrides)
    _print_pipeline_result(cfg, result, time.perf_counter() - started)
    _write_json(
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


def _tool(name: str) -> str:
    """The command for a tool of this environment, runnable without activating the venv."""
    path = Path(sys.executable).parent / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_pipeline_result(cfg, result, wall: float) -> None:
    from alignment.workspace import Workspace

    ws = Workspace.from_config(cfg.workspace)
    reg = result.registered
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
        "",
        "  evaluation (held-out pairs):",
        *[f"    {k:28s} {v:.4f}" for k, v in result.evaluation.items()],
        "",
        "  stage times (s):",
        *[f"    {k:28s} {v:.1f}" for k, v in result.stage_seconds.items()],
        "",
        "Open the UIs on what was produced:",
        f"  {_tool('mlflow')} ui --backend-store-uri {ws.tracking_uri} --port 5000",
    ]
    if "PREFECT_API_URL" not in os.environ:
        lines.append(
            f"  PREFECT_HOME={os.environ.get('PREFECT_HOME')} "
            f"{_tool('prefect')} server start --port 4200"
        )
    lines.append("and ask the registered policy something:")
    lines.append(
        f"  {_tool('python')} -c \"import mlflow; mlflow.set_tracking_uri('{ws.tracking_uri}'); "
        f"print(mlflow.pyfunc.load_model('models:/{reg.name}@{reg.alias}').predict(['What is 2 plus 3?']))\""
    )
    print("\n".join(lines))


def cmd_ingest(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.data.ingest import ingest_file, summary_lines
    from alignment.errors import ValidationFailed
    from alignment.workspace import Workspace

    ws = Workspace.from_config(cfg.workspace).ensure()
    source = Path(args.input) if args.input else cfg.ingest.input
    if source is None:
        raise AlignmentError("no input: pass --input FILE or set ingest.input in the config")
    out = (
        Path(args.out)
        if args.out
        else ws.staging / f"{cfg.ingest.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    try:
        result = ingest_file(source, out, cfg.ingest, cfg.validation)
    except ValidationFailed as exc:
        print(str(exc), file=sys.stderr)
        return 3
    print("\n".join(summary_lines(result)))
    payload = {
        "accepted_path": str(result.accepted_path),
        "rejected_path": str(result.rejected_path),
        "report_path": str(result.report_path),
        "accepted": result.accepted,
        "rejected": result.rejected,
    }
    if args.version or args.print_commands:
        from alignment.data.version import version_dataset

        version = version_dataset(ws, cfg.ingest.dataset, out, commit=not args.print_commands)
        if version.commands:
            print(f"data version {version.id}: added to DVC; record it with:")
            print("\n".join(f"  {command}" for command in version.commands))
        else:
            state = "new" if version.created else "already versioned"
            print(f"data version {version.id} ({state}), tag {version.tag}")
        payload["data_version"] = version.to_dict()
    _write_json(args.json, payload)
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.data.version import list_versions
    from alignment.workspace import Workspace

    ws = Workspace.from_config(cfg.workspace)
    versions = list_versions(ws, args.dataset or cfg.ingest.dataset)
    if not versions:
        print("no versions recorded yet")
    for v in versions:
        print(f"{v.id}  {v.tag}  commit {v.git_commit[:10]}")
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.data.version import show_version
    from alignment.workspace import Workspace

    info = show_version(
        Workspace.from_config(cfg.workspace), args.dataset or cfg.ingest.dataset, args.version_id
    )
    for key in ("id", "tag", "git_commit", "source", "detected_format", "input_rows"):
        print(f"{key:22s} {info[key]}")
    print(
        f"{'rows':22s} {info['accepted']} accepted, {info['rejected']} rejected "
        f"({(info['rejected_fraction'] or 0):.1%})"
    )
    for key, value in {**info["rule_failures"], **info["malformed_reasons"]}.items():
        print(f"  {key:20s} {value}")
    for key, value in info["statistics"].items():
        print(f"{key:22s} {value}")
    _write_json(args.json, info)
    return 0


def cmd_data_diff(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.data.version import diff_versions
    from alignment.workspace import Workspace

    diff = diff_versions(
        Workspace.from_config(cfg.workspace), args.dataset or cfg.ingest.dataset, args.v1, args.v2
    )
    print(
        f"{diff['v1'][:12]} -> {diff['v2'][:12]}: +{diff['added']} rows, "
        f"-{diff['removed']} rows, {diff['unchanged']} unchanged"
    )
    print(f"{'':26s} {diff['v1'][:12]:>14s} {diff['v2'][:12]:>14s}")
    for key, (a, b) in diff["side_by_side"].items():
        print(f"{key:26s} {a!s:>14s} {b!s:>14s}")
    _write_json(args.json, diff)
    return 0


def cmd_data_get(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.data.version import get_version
    from alignment.workspace import Workspace

    out = Path(args.out or args.file)
    path = get_version(
        Workspace.from_config(cfg.workspace),
        args.dataset or cfg.ingest.dataset,
        args.version_id,
        out,
        args.file,
    )
    print(path)
    _write_json(args.json, {"path": str(path)})
    return 0


def cmd_flow_ingest(args: argparse.Namespace) -> int:
    _config(args)
    from flows.ingest import ingest_flow

    overrides = list(args.set or [])
    if args.workspace:
        overrides.append(f"workspace.root={args.workspace}")
    outcome = ingest_flow(config_path=args.config, overrides=overrides, input=args.input)
    print(outcome["summary"])
    _write_json(args.json, outcome)
    return 0 if outcome["passed"] else 3


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.set or [])
    if args.workspace:
        overrides.append(f"workspace.root={args.workspace}")
    return overrides


def cmd_flow_retrain(args: argparse.Namespace) -> int:
    _config(args)
    from flows.retrain import retrain

    outcome = retrain(config_path=args.config, overrides=_overrides(args), landing=args.landing)
    _write_json(args.json, outcome)
    return 0


def cmd_flow_serve_retrain(args: argparse.Namespace) -> int:
    """Serve the retrain flow as a scheduled deployment (one per use case) until stopped."""
    cfg = _config(args)
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
            "overrides": _overrides(args),
            "landing": args.landing,
        },
        # one retrain per use case at a time; the flow's own lock covers manual runs too
        concurrency_limit=1,
        tags=["retrain", cfg.registry.model_name],
    )
    print(f"serving retrain-{cfg.registry.model_name} on '{cron}'; Ctrl-C stops")
    serve(deployment)
    return 0


def cmd_model_prepare(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.models import resolve_base_model
    from alignment.workspace import Workspace

    corpus = None
    if cfg.model.source == "tiny":
        # the tiny model's tokenizer is trained on the spot, on the training texts when given
        if args.corpus:
            corpus = _corpus_from_records(Path(args.corpus))
        elif cfg.ingest.input is not None and Path(cfg.ingest.input).exists():
            corpus = _corpus_from(Path(cfg.ingest.input))
    path = resolve_base_model(cfg.model, Workspace.from_config(cfg.workspace).ensure(), corpus)
    print(path)
    _write_json(args.json, {"path": str(path)})
    return 0


def _corpus_from(path: Path) -> list[str]:
    """Raw text lines of a file or folder to train the tiny tokenizer on (byte-level: best effort)."""
    import gzip

    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    lines: list[str] = []
    for file in files:
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rt", encoding="utf-8", errors="replace") as fh:
            lines += [line for _, line in zip(range(50_000 - len(lines)), fh, strict=False)]
    return lines


def _corpus_from_records(path: Path) -> list[str]:
    """Every message text of a canonical preference Parquet."""
    import pandas as pd

    frame = pd.read_parquet(path, columns=["prompt", "chosen", "rejected"])
    return [
        str(message["content"])
        for column in ("prompt", "chosen", "rejected")
        for messages in frame[column]
        for message in messages
    ]


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.train.launch import launch_training

    result = launch_training(
        args.method,
        cfg,
        Path(args.model),
        Path(args.train_data),
        Path(args.output),
        eval_path=Path(args.eval_data) if args.eval_data else None,
        resume=args.resume,
        reward_model_path=Path(args.reward_model) if args.reward_model else None,
    )
    print(f"{args.method} finished in {result.wall_seconds:.0f} s; model at {result.output_dir}")
    _write_json(args.json, {"output_dir": str(result.output_dir), "metrics": result.metrics})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.suite:
        return _evaluate_suite(args, cfg)
    from alignment.evaluation.dpo import evaluate_dpo_policy

    metrics = evaluate_dpo_policy(
        Path(args.policy), Path(args.reference), Path(args.data), cfg.evaluation, cfg.train.dpo.beta
    )
    for key, value in metrics.items():
        print(f"{key:28s} {value:.4f}")
    _write_json(args.out, metrics)
    return 0


def _evaluate_suite(args: argparse.Namespace, cfg) -> int:
    """The full suite: candidate vs champion and reference; table on stdout, report folder."""
    from alignment.evaluation.report import format_table
    from alignment.evaluation.suite import evaluate_candidate

    prompts = args.prompts or cfg.evaluation.prompts
    metrics = evaluate_candidate(
        Path(args.policy),
        Path(args.champion) if args.champion else None,
        Path(args.reference),
        Path(args.data),
        Path(prompts) if prompts else None,
        cfg.evaluation,
        reward_model=Path(args.reward_model) if args.reward_model else None,
        judge_model=Path(args.judge_model) if args.judge_model else None,
        beta=cfg.train.dpo.beta,
        out_dir=Path(args.report_dir) if args.report_dir else None,
    )
    print(format_table(metrics, f"evaluation of {args.policy}"))
    _write_json(args.out, metrics)
    return 0


def _registry_session(args: argparse.Namespace):
    """Config, workspace, and MLflow pointed at its store."""
    cfg = _config(args)
    from alignment import registry
    from alignment.workspace import Workspace

    ws = Workspace.from_config(cfg.workspace)
    registry.connect(ws, cfg.registry.experiment)
    return cfg, ws


def _actor(given: str | None) -> str:
    import getpass

    if given:
        return given
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def _print_lineage(info: dict) -> None:
    tags = info["tags"]
    made = {k: v for k, v in tags.items() if not k.startswith(("eval.", "gate.", "rollback."))}
    sections = [
        ("made from", made),
        ("evaluation", {k: v for k, v in tags.items() if k.startswith("eval.")}),
        ("gate", {k: v for k, v in tags.items() if k.startswith(("gate.", "rollback."))}),
    ]
    print(
        f"{info['name']} version {info['version']}  aliases: {', '.join(info['aliases']) or '-'}"
        f"  run {info['run_id']}"
    )
    if info["run_id"]:
        print(f"    {'config':30s} runs:/{info['run_id']}/config/config.yaml")
    for title, items in sections:
        if items:
            print(f"  {title}")
            for key, value in items.items():
                print(f"    {key:30s} {value}")
    if info["history"]:
        print("  champion moves")
        for e in info["history"]:
            who = e.get("approver") or e.get("actor")
            what = (
                f"promoted (previous {e.get('previous') or '-'}, {e.get('decision')})"
                if e["action"] == "promote"
                else f"rollback {e.get('from')} -> {e.get('version')}"
            )
            print(f"    {e.get('at')}  {what} by {who}: {e.get('reason') or '-'}")


def cmd_models_show(args: argparse.Namespace) -> int:
    cfg, _ = _registry_session(args)
    from mlflow import MlflowClient

    from alignment import registry

    ref = args.ref or cfg.registry.model_name
    if "@" in ref or "/" in ref or ref.isdigit():
        name, version = registry.resolve_ref(ref, cfg.registry.model_name)
        infos = [registry.lineage(name, version)]
    else:
        versions = MlflowClient().search_model_versions(f"name = '{ref}'")
        if not versions:
            raise AlignmentError(f"no registered model named {ref!r}")
        infos = [registry.lineage(ref, v) for v in sorted(int(v.version) for v in versions)]
    for info in infos:
        _print_lineage(info)
    _write_json(args.json, {"versions": infos})
    return 0


def _promotion_limit(name: str):
    """With a Prefect server configured, hold its global concurrency limit ``promote-<name>``.

    The workspace's file lock serialises promotions on one machine; promotions from several
    machines that share an MLflow server are serialised by this limit (create it once with
    ``prefect gcl create promote-<name> --limit 1``), as the approval flow's are.
    """
    import contextlib

    if not os.environ.get("PREFECT_API_URL"):
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def held():
        from prefect.concurrency.sync import concurrency

        limit = f"promote-{name}"
        print(f"taking concurrency limit {limit} (waits while another promotion holds it)")
        sys.stdout.flush()
        with concurrency(limit, occupy=1, strict=False):
            yield

    return held()


def cmd_models_promote(args: argparse.Namespace) -> int:
    cfg, ws = _registry_session(args)
    from alignment import promotion, registry

    sep = "" if args.version.startswith("@") else "/"
    name, version = registry.resolve_ref(f"{args.name}{sep}{args.version}", args.name)
    policy_path = Path(args.policy or cfg.registry.gate_policy or promotion.DEFAULT_POLICY)
    actor = _actor(args.actor)
    if args.require_approval:
        from flows.promote import promote_flow

        overrides = list(args.set or [])
        if args.workspace:
            overrides.append(f"workspace.root={args.workspace}")
        decision = promote_flow(
            name=name,
            version=version,
            config_path=args.config,
            overrides=overrides,
            policy_path=str(policy_path),
            actor=actor,
            reason=args.reason or "",
            force=args.force,
            require_approval=True,
            approval_timeout=args.approval_timeout,
        )
    else:
        policy, _ = promotion.load_policy(policy_path)
        with _promotion_limit(name):
            decision = promotion.promote(
                ws,
                name,
                version,
                policy,
                policy_path=policy_path,
                actor=actor,
                reason=args.reason or "",
                force=args.force,
            )
    print(decision.table())
    _write_json(args.json, decision.to_dict())
    return 0 if decision.promoted else 3


def cmd_models_rollback(args: argparse.Namespace) -> int:
    _, ws = _registry_session(args)
    from alignment import promotion

    back = promotion.rollback(ws, args.name, actor=_actor(args.actor), reason=args.reason or "")
    print(
        f"{back.name}: champion {back.from_version} -> {back.to_version}"
        f" (previous now {back.previous_after or '-'}), by {back.actor}"
    )
    _write_json(args.json, back.__dict__)
    return 0


def cmd_models_rebuild(args: argparse.Namespace) -> int:
    cfg, ws = _registry_session(args)
    from alignment import promotion, registry

    name, version = registry.resolve_ref(args.ref, cfg.registry.model_name)
    plan = promotion.plan_rebuild(ws, name, version, ws.runs / "rebuilds" / f"{name}-v{version}")
    command = ["alignment", "flows", "pipeline", "--config", str(plan.config_path)]
    command += [arg for o in plan.overrides for arg in ("--set", o)]
    if plan.data_version:
        command += ["--data-version", plan.data_version]
    print(f"rebuild {name} version {version} (run {plan.run_id})")
    print(f"  config        {plan.config_path}  (recovered from the run's artifacts)")
    print(
        f"  data version  {plan.data_version or '-'} of {plan.dataset}: "
        f"{'found in the data repository' if plan.data_found else 'NOT FOUND'}"
    )
    print(f"  git commit    recorded {plan.git_commit}, now {plan.git_commit_now}")
    recorded = plan.git_commit.removesuffix("-dirty")
    if recorded != plan.git_commit_now.removesuffix("-dirty"):
        print(f"  note          for the same code: git checkout {recorded}")
    print(f"  would run     {' '.join(command)}")
    _write_json(args.json, {**plan.__dict__, "command": command})
    if not plan.data_found:
        raise AlignmentError(
            f"data version {plan.data_version!r} is not in {ws.data_repo}; cannot rebuild from it"
        )
    if args.dry_run:
        return 0
    from flows.pipeline import alignment_pipeline

    result = alignment_pipeline(
        config_path=str(plan.config_path),
        overrides=plan.overrides,
        data_version=plan.data_version or None,
    )
    reg = result.registered
    print(
        f"rebuilt as {reg.name} version {reg.version} (@{reg.alias}) "
        f"from data {result.data_version.id}"
    )
    return 0


def _cai_setup(args: argparse.Namespace):
    cfg = _config(args)
    from alignment.cai.prompts import collect_prompts
    from alignment.constitution import load_constitution

    constitution = load_constitution(args.constitution or cfg.cai.constitution)
    prompts = collect_prompts(
        args.prompts or cfg.cai.prompts,
        cfg.cai.red_team_packages,
        cfg.cai.package_prompt_limit,
        cfg.cai.max_prompts,
    )
    return cfg, constitution, prompts


def cmd_cai_check(args: argparse.Namespace) -> int:
    from alignment.constitution import load_constitution

    c = load_constitution(args.file)
    print(f"{c.name} version {c.version}  hash {c.hash}")
    for p in c.principles:
        print(f"  {p.name:20s} weight {p.weight:g}")
    print(f"  {len(c.examples)} few-shot examples")
    _write_json(args.json, {"name": c.name, "version": c.version, "hash": c.hash})
    return 0


def cmd_cai_sl(args: argparse.Namespace) -> int:
    cfg, constitution, prompts = _cai_setup(args)
    from alignment.cai.critique import run_sl_phase
    from alignment.cai.generate import GenerationSettings, open_generator

    settings = GenerationSettings.from_config(cfg.cai, cfg.cai.sl_temperature)
    with open_generator(args.model, cfg.cai.num_processes) as generator:
        result = run_sl_phase(
            generator, prompts, constitution, Path(args.out), settings, cfg.cai.revision_rounds,
            cfg.cai.few_shot, cfg.cai.seed, model_name=args.model,
        )  # fmt: skip
    print(
        f"{result.prompts} prompts, {result.rows} SFT rows ({result.sft_path}); "
        f"audit {result.audit_path}; constitution {result.constitution_hash}"
    )
    _write_json(args.json, {**result.__dict__})
    return 0


def cmd_cai_label(args: argparse.Namespace) -> int:
    cfg, constitution, prompts = _cai_setup(args)
    from alignment.cai.feedback import label_prompts
    from alignment.cai.generate import GenerationSettings, load_model, open_generator

    judge = args.judge or cfg.cai.feedback_model or args.model
    judge_model, judge_tokenizer = load_model(judge)
    settings = GenerationSettings.from_config(cfg.cai, cfg.cai.rl_temperature)
    with open_generator(args.model, cfg.cai.num_processes) as generator:
        result = label_prompts(
            generator, judge_model, judge_tokenizer, prompts, constitution, Path(args.out),
            settings, judge_name=str(judge), seed=cfg.cai.seed,
            judge_batch_size=cfg.cai.judge_batch_size, chain_of_thought=cfg.cai.chain_of_thought,
            cot_max_new_tokens=cfg.cai.cot_max_new_tokens, clamp=cfg.cai.cot_clamp,
        )  # fmt: skip
    print(f"{result.pairs} AI-labelled pairs ({result.skipped} skipped) -> {result.path}")
    _write_json(args.json, {**result.__dict__})
    return 0


def cmd_cai_review(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.cai.review import apply_review, read_verdicts, sample_for_review

    if args.action == "pause":
        from flows.cai import cai_review_flow

        overrides = list(args.set or [])
        if args.workspace:
            overrides.append(f"workspace.root={args.workspace}")
        result = cai_review_flow(
            labelled=str(Path(args.labelled).resolve()),
            config_path=args.config,
            overrides=overrides,
            timeout_seconds=args.timeout,
        )
        rate = "-" if result.agreement_rate is None else f"{result.agreement_rate:.1%}"
        print(f"reviewed {result.reviewed}: agree {result.agreed}, flip {result.flipped}; "
              f"AI-human agreement {rate}")  # fmt: skip
        _write_json(args.json, {**result.__dict__})
        return 0
    if not args.csv:
        raise AlignmentError(f"cai review {args.action} needs --csv")
    if args.action == "sample":
        sheet = sample_for_review(
            args.labelled, args.csv, args.n or cfg.cai.review_sample_size, cfg.cai.seed
        )
        print(f"review sheet {sheet}: write agree or flip in the verdict column")
        return 0
    result = apply_review(args.labelled, read_verdicts(args.csv), args.out)
    rate = "-" if result.agreement_rate is None else f"{result.agreement_rate:.1%}"
    print(f"reviewed {result.reviewed}: agree {result.agreed}, flip {result.flipped}; "
          f"AI-human agreement {rate}")  # fmt: skip
    payload = {**result.__dict__}
    if args.version and result.out_path is not None:
        from alignment.data.ingest import ingest_file
        from alignment.data.version import version_dataset
        from alignment.workspace import Workspace

        ws = Workspace.from_config(cfg.workspace).ensure()
        out = ws.staging / f"{cfg.cai.rl_dataset}-review-{time.strftime('%Y%m%d-%H%M%S')}"
        ingest_cfg = cfg.ingest.model_copy(update={"dataset": cfg.cai.rl_dataset})
        ingest_file(result.out_path, out, ingest_cfg, cfg.validation)
        version = version_dataset(ws, cfg.cai.rl_dataset, out)
        print(f"data version {version.id} ({'new' if version.created else 'unchanged'})")
        payload["data_version"] = version.to_dict()
    _write_json(args.json, payload)
    return 0


def cmd_flow_cai(args: argparse.Namespace) -> int:
    _config(args)
    from flows.cai import cai_flow

    overrides = list(args.set or [])
    if args.workspace:
        overrides.append(f"workspace.root={args.workspace}")
    result = cai_flow(config_path=args.config, overrides=overrides)
    print(
        f"constitution {result.constitution_hash}: SFT data {result.sft_data.id}, "
        f"preference data {result.preference_data.id}, models "
        f"{ {m: str(t.output_dir) for m, t in result.training.items()} }"
    )
    return 0


# --- the oracle task (alignment/oracle): the built-in demonstration dataset ----------------


def _oracle_settings(args: argparse.Namespace):
    from alignment.oracle.experiment import OracleSettings

    given = {
        key: getattr(args, key)
        for key in ("seed", "bt_temperature", "max_new_tokens", "device")
        if getattr(args, key, None) is not None
    }
    return OracleSettings(**given)


def cmd_oracle_data(args: argparse.Namespace) -> int:
    from alignment.oracle.experiment import demonstration_data, read_records
    from alignment.oracle.task import label_agreement

    settings = _oracle_settings(args)
    files = demonstration_data(Path(args.out), settings, Path(args.policy) if args.policy else None)
    summary = {}
    for name, path in files.items():
        records = read_records(path)
        summary[name] = {"path": str(path), "records": len(records)}
        if name != "sft":
            summary[name]["label_agreement_with_oracle"] = label_agreement(records)
        print(f"{name:22s} {len(records):6d} records  {path}")
    _write_json(args.json, summary)
    return 0


def cmd_oracle_eval(args: argparse.Namespace) -> int:
    import dataclasses

    from alignment.oracle import experiment

    settings = _oracle_settings(args)
    if args.samples_per_prompt:
        settings = dataclasses.replace(settings, eval_samples_per_prompt=args.samples_per_prompt)
    base = experiment.baseline(Path(args.sft), settings)
    metrics = experiment.evaluate(Path(args.policy), Path(args.sft), base, settings)
    metrics["sft_oracle_reward"] = float(base.rewards.mean())
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"{key:24s} {value:.4f}")
    _write_json(args.json, metrics)
    return 0


# --- parser ---------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML config file (defaults apply without one)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.dpo.beta=0.2"
    )
    p.add_argument("--workspace", help="workspace folder (overrides workspace.root)")
    p.add_argument("--json", help="also write the result as JSON to this file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignment", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the whole pipeline on the demo data and a tiny model")
    _common(p)
    p.set_defaults(func=cmd_pipeline, config_default="configs/demo.yaml")

    flows = sub.add_parser("flows", help="run Prefect flows").add_subparsers(
        dest="flow", required=True
    )
    p = flows.add_parser(
        "pipeline", help="ingest → validate → version → SFT → DPO → evaluate → register"
    )
    _common(p)
    p.add_argument("--data-version", help="train on this recorded data version (skip ingest)")
    p.set_defaults(func=cmd_pipeline)
    p = flows.add_parser("retrain", help="retrain if fresh data landed; promote through the gate")
    _common(p)
    p.add_argument("--landing", help="landing folder or file (overrides retrain.landing)")
    p.set_defaults(func=cmd_flow_retrain)
    p = flows.add_parser("serve-retrain", help="serve the retrain flow on a cron schedule")
    _common(p)
    p.add_argument("--landing", help="landing folder or file (overrides retrain.landing)")
    p.add_argument("--cron", help="schedule, e.g. '0 3 * * *' (overrides retrain.cron)")
    p.set_defaults(func=cmd_flow_serve_retrain)
    p = flows.add_parser("ingest", help="ingest → validate → version, with a summary artifact")
    _common(p)
    p.add_argument("--input", "-i", help="raw file or folder (overrides ingest.input)")
    p.set_defaults(func=cmd_flow_ingest)

    data = sub.add_parser("data", help="preference data").add_subparsers(
        dest="data_command", required=True
    )
    p = data.add_parser("ingest", help="read, normalize and validate a preference file")
    _common(p)
    p.add_argument("--input", "-i", help="raw file (overrides ingest.input)")
    p.add_argument("--out", help="folder for accepted/rejected rows and the report")
    p.add_argument("--version", action="store_true", help="also version the result with DVC")
    p.add_argument(
        "--print-commands",
        action="store_true",
        help="version with DVC but print the git commit/tag and dvc push commands "
        "instead of running them",
    )
    p.set_defaults(func=cmd_ingest)
    p = data.add_parser("versions", help="list the recorded versions of a dataset")
    _common(p)
    p.add_argument("--dataset", help="dataset name (default ingest.dataset)")
    p.set_defaults(func=cmd_versions)
    p = data.add_parser("show", help="counts, rule failures and statistics of one version")
    _common(p)
    p.add_argument("version_id", help="version id (or a prefix) or tag")
    p.add_argument("--dataset", help="dataset name (default ingest.dataset)")
    p.set_defaults(func=cmd_data_show)
    p = data.add_parser("diff", help="rows added/removed and statistics of two versions")
    _common(p)
    p.add_argument("v1")
    p.add_argument("v2")
    p.add_argument("--dataset", help="dataset name (default ingest.dataset)")
    p.set_defaults(func=cmd_data_diff)
    p = data.add_parser("get", help="restore the exact bytes of a version's file")
    _common(p)
    p.add_argument("version_id", help="version id (or a prefix) or tag")
    p.add_argument("--dataset", help="dataset name (default ingest.dataset)")
    p.add_argument(
        "--file",
        default="accepted.parquet",
        choices=["accepted.parquet", "rejected.parquet", "report.json"],
    )
    p.add_argument("--out", help="where to write it (default: the file name, here)")
    p.set_defaults(func=cmd_data_get)

    cai = sub.add_parser("cai", help="constitutional AI").add_subparsers(
        dest="cai_command", required=True
    )
    p = cai.add_parser("check", help="validate a constitution; print its hash and principles")
    p.add_argument("file", nargs="?", help="constitution YAML (default: the project's own)")
    p.add_argument("--json", help="also write the result as JSON to this file")
    p.set_defaults(func=cmd_cai_check)
    for name, func, what in (
        ("sl", cmd_cai_sl, "SL phase: answer, critique, revise; write sft.jsonl + audit.jsonl"),
        ("label", cmd_cai_label, "RL phase: sample two responses, AI-judge them; write pairs"),
    ):
        p = cai.add_parser(name, help=what)
        _common(p)
        p.add_argument("--model", required=True, help="model folder that generates")
        p.add_argument("--out", required=True, help="output folder (sl) or JSONL file (label)")
        p.add_argument("--prompts", help="prompt JSONL (default cai.prompts)")
        p.add_argument("--constitution", help="constitution YAML (default cai.constitution)")
        if name == "label":
            p.add_argument("--judge", help="feedback model folder (default: cai.feedback_model)")
        p.set_defaults(func=func)
    p = cai.add_parser(
        "review",
        help="human review of AI labels: sample to CSV, apply a filled CSV, or pause a Prefect "
        "run for verdicts given in the UI",
    )
    _common(p)
    p.add_argument("action", choices=["sample", "apply", "pause"])
    p.add_argument("--labelled", required=True, help="AI-labelled pairs (JSONL or Parquet)")
    p.add_argument("--csv", help="review sheet to write (sample) or read (apply)")
    p.add_argument(
        "--timeout", type=int, default=86_400, help="pause: seconds to wait for the verdicts"
    )
    p.add_argument("--n", type=int, help="pairs to sample (default cai.review_sample_size)")
    p.add_argument("--out", help="apply: write all pairs, flips applied, to this JSONL")
    p.add_argument("--version", action="store_true", help="apply: ingest and version --out")
    p.set_defaults(func=cmd_cai_review)
    p = flows.add_parser("cai", help="constitutional AI: SL → SFT → AI feedback → versioned pairs")
    _common(p)
    p.set_defaults(func=cmd_flow_cai)

    model = sub.add_parser("model", help="base models").add_subparsers(
        dest="model_command", required=True
    )
    p = model.add_parser(
        "prepare", help="build or convert the configured base model; print its folder"
    )
    _common(p)
    p.add_argument("--corpus", help="canonical Parquet whose texts train the tiny tokenizer")
    p.set_defaults(func=cmd_model_prepare)

    p = sub.add_parser("train", help="run one training method as a DeepSpeed job")
    _common(p)
    p.add_argument("method", choices=["sft", "dpo", "kto", "reward", "ppo", "rloo", "grpo"])
    p.add_argument("--reward-model", help="reward model folder (ppo, rloo, grpo)")
    p.add_argument("--model", required=True, help="starting checkpoint folder")
    p.add_argument("--train-data", required=True, help="canonical preference Parquet")
    p.add_argument("--eval-data", help="held-out canonical Parquet")
    p.add_argument("--output", required=True, help="job folder (checkpoints, log, final model)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="held-out DPO reward accuracy and margin of a policy (--suite: the full suite)",
    )
    _common(p)
    p.add_argument("--policy", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--data", required=True, help="held-out canonical Parquet")
    p.add_argument("--out", help="write metrics JSON here")
    p.add_argument(
        "--suite",
        action="store_true",
        help="the full suite: win rates vs --champion, KL, lengths, refusals, alignment tax",
    )
    p.add_argument("--champion", help="(suite) champion checkpoint folder; none: no vs-champion")
    p.add_argument("--reward-model", help="(suite) reward model folder: judge and rm_accuracy")
    p.add_argument("--judge-model", help="(suite) constitution judge (feedback) model folder")
    p.add_argument("--prompts", help="(suite) held-out prompts JSONL (default evaluation.prompts)")
    p.add_argument("--report-dir", help="(suite) write table, samples and plots here")
    p.set_defaults(func=cmd_evaluate)

    models = sub.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True
    )
    p = models.add_parser(
        "show", help="versions, aliases and lineage: NAME, NAME@alias or NAME/version"
    )
    _common(p)
    p.add_argument("ref", nargs="?")
    p.set_defaults(func=cmd_models_show)
    p = models.add_parser(
        "promote", help="evaluate the gate; move @champion to VERSION only if it passes"
    )
    _common(p)
    p.add_argument("name", help="registered model")
    p.add_argument("version", help="version number or @alias (e.g. @challenger)")
    p.add_argument("--policy", help="gate policy YAML (default registry.gate_policy)")
    p.add_argument("--reason", help="why; recorded with the decision")
    p.add_argument("--actor", help="who asks (default: the login name)")
    p.add_argument("--force", action="store_true", help="promote even if the gate fails")
    p.add_argument(
        "--require-approval",
        action="store_true",
        help="run the Prefect flow, which waits for a person to approve in the Prefect UI",
    )
    p.add_argument(
        "--approval-timeout", type=int, default=86_400, help="seconds to wait for approval"
    )
    p.set_defaults(func=cmd_models_promote)
    p = models.add_parser("rollback", help="move @champion back to @previous")
    _common(p)
    p.add_argument("name", help="registered model")
    p.add_argument("--reason", help="why; recorded in the history")
    p.add_argument("--actor", help="who (default: the login name)")
    p.set_defaults(func=cmd_models_rollback)
    p = models.add_parser(
        "rebuild", help="re-run the training that made a version, from its recorded lineage"
    )
    _common(p)
    p.add_argument("ref", help="NAME@alias, NAME/version or a version number")
    p.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    p.set_defaults(func=cmd_models_rebuild)
    oracle = sub.add_parser(
        "oracle", help="the oracle task: reviews scored by a known sentiment lexicon"
    ).add_subparsers(dest="oracle_command", required=True)
    p = oracle.add_parser("data", help="write the demonstration dataset (SFT + labelled pairs)")
    p.add_argument("--out", required=True, help="folder for sft.jsonl and the preference files")
    p.add_argument("--policy", help="sample the pairs from this model (default: the grammar)")
    p.add_argument("--seed", type=int)
    p.add_argument("--bt-temperature", type=float, help="Bradley-Terry noise (0: noiseless)")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--device", help="cpu or cuda (sampling with --policy)")
    p.add_argument("--json", help="also write the summary as JSON to this file")
    p.set_defaults(func=cmd_oracle_data)
    p = oracle.add_parser(
        "eval", help="oracle reward, win rate and KL of a policy against the SFT policy"
    )
    p.add_argument("--policy", required=True, help="policy model folder")
    p.add_argument("--sft", required=True, help="the SFT policy it started from")
    p.add_argument("--samples-per-prompt", type=int, help="samples per held-out prompt")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--json", help="also write the metrics as JSON to this file")
    p.set_defaults(func=cmd_oracle_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None) is None and getattr(args, "config_default", None):
        args.config = args.config_default
    try:
        return args.func(args)
    except AlignmentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
