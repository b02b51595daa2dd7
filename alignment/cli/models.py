"""``alignment model prepare`` and ``alignment models show|promote|rollback|rebuild``."""

from __future__ import annotations

import argparse
from pathlib import Path

from alignment.cli.common import (
    actor_name,
    add_common,
    config_from,
    overrides_from,
    server_limit,
    write_json,
)
from alignment.errors import AlignmentError


def cmd_model_prepare(args: argparse.Namespace) -> int:
    cfg = config_from(args)
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
    if args.out:  # a copy where a pipeline tracks it (dvc.yaml), beside the workspace's own
        import shutil

        out = Path(args.out)
        shutil.rmtree(out, ignore_errors=True)
        path = Path(shutil.copytree(path, out))
    print(path)
    write_json(args.json, {"path": str(path)})
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


def _registry_session(args: argparse.Namespace):
    """Config, workspace, and MLflow pointed at its store."""
    cfg = config_from(args)
    from alignment import registry
    from alignment.workspace import Workspace

    ws = Workspace.from_config(cfg.workspace)
    registry.connect(ws, cfg.registry.experiment)
    return cfg, ws


def _print_lineage(info: dict) -> None:
    tags = info["tags"]
    made = {k: v for k, v in tags.items() if not k.startswith(("eval.", "gate.", "rollback."))}
    sections = [
        ("made from", made),
        # every metric from the run; the version's eval.* tags are only its headline figures
        ("evaluation", {k: f"{v:.6g}" for k, v in info.get("metrics", {}).items()}),
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
            if e.get("account"):  # the account the registry server authenticated
                who = f"{who} (account {e['account']})"
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
    named = ref.partition("@")[0]
    named = named.rpartition("/")[0] if "/" in named else ("" if named.isdigit() else named)
    production = _production(cfg, named)
    if "@" in ref or "/" in ref or ref.isdigit():
        name, version = _resolve(cfg, ref)
        infos = [registry.lineage(name, version, production)]
    else:
        versions = MlflowClient().search_model_versions(f"name = '{ref}'")
        if not versions:
            raise AlignmentError(f"no registered model named {ref!r}")
        numbers = sorted(int(v.version) for v in versions)
        infos = [registry.lineage(ref, v, production) for v in numbers]
    for info in infos:
        _print_lineage(info)
    write_json(args.json, {"versions": infos})
    return 0


def _production(cfg, name: str) -> str | None:
    """The production model holding ``name``'s champion (registry.production_model), if any."""
    if name in ("", cfg.registry.model_name):
        return cfg.registry.production_model
    return None


def _resolve(cfg, ref: str) -> tuple[str, str]:
    """(name, candidate version) of a reference; ``@champion``/``@previous`` read where they live."""
    from alignment import registry
    from alignment.champion import ChampionSlot

    name, _, alias = ref.partition("@")
    production = _production(cfg, name)
    if alias and production:
        version = ChampionSlot.of(cfg.registry.model_name, production).holder(alias)
        if version is not None:
            return cfg.registry.model_name, version
    return registry.resolve_ref(ref, cfg.registry.model_name)


def cmd_models_promote(args: argparse.Namespace) -> int:
    cfg, ws = _registry_session(args)
    from alignment import promotion, registry

    sep = "" if args.version.startswith("@") else "/"
    name, version = registry.resolve_ref(f"{args.name}{sep}{args.version}", args.name)
    production = _production(cfg, name)
    policy_path = Path(args.policy or cfg.registry.gate_policy or promotion.DEFAULT_POLICY)
    actor = actor_name(args.actor)
    if args.require_approval:
        from flows.promote import promote_flow

        overrides = overrides_from(args)
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
        with server_limit(f"promote-{name}", "promotion"):
            decision = promotion.promote(
                ws,
                name,
                version,
                policy,
                policy_path=policy_path,
                actor=actor,
                reason=args.reason or "",
                force=args.force,
                production=production,
            )
    print(decision.table())
    write_json(args.json, decision.to_dict())
    return 0 if decision.promoted else 3


def cmd_models_rollback(args: argparse.Namespace) -> int:
    cfg, ws = _registry_session(args)
    from alignment import promotion

    back = promotion.rollback(
        ws,
        args.name,
        actor=actor_name(args.actor),
        reason=args.reason or "",
        production=_production(cfg, args.name),
    )
    print(
        f"{back.name}: champion {back.from_version} -> {back.to_version}"
        f" (previous now {back.previous_after or '-'}), by {back.actor}"
        + (f" (account {back.account})" if back.account else "")
    )
    write_json(args.json, back.__dict__)
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
    write_json(args.json, {**plan.__dict__, "command": command})
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


def register(sub) -> None:
    """``alignment model ...`` (base models) and ``alignment models ...`` (the registry)."""
    model = sub.add_parser("model", help="base models").add_subparsers(
        dest="model_command", required=True
    )
    p = model.add_parser(
        "prepare", help="build or convert the configured base model; print its folder"
    )
    add_common(p)
    p.add_argument("--corpus", help="canonical Parquet whose texts train the tiny tokenizer")
    p.add_argument("--out", help="also copy the model folder here")
    p.set_defaults(func=cmd_model_prepare)
    models = sub.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True
    )
    p = models.add_parser(
        "show", help="versions, aliases and lineage: NAME, NAME@alias or NAME/version"
    )
    add_common(p)
    p.add_argument("ref", nargs="?")
    p.set_defaults(func=cmd_models_show)
    p = models.add_parser(
        "promote", help="evaluate the gate; move @champion to VERSION only if it passes"
    )
    add_common(p)
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
    add_common(p)
    p.add_argument("name", help="registered model")
    p.add_argument("--reason", help="why; recorded in the history")
    p.add_argument("--actor", help="who (default: the login name)")
    p.set_defaults(func=cmd_models_rollback)
    p = models.add_parser(
        "rebuild", help="re-run the training that made a version, from its recorded lineage"
    )
    add_common(p)
    p.add_argument("ref", help="NAME@alias, NAME/version or a version number")
    p.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    p.set_defaults(func=cmd_models_rebuild)
