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
        f"  mlflow ui --backend-store-uri {ws.tracking_uri} --port 5000",
    ]
    if "PREFECT_API_URL" not in os.environ:
        lines.append(
            f"  PREFECT_HOME={os.environ.get('PREFECT_HOME')} prefect server start --port 4200"
        )
    lines.append(
        f"  python -c \"import mlflow; mlflow.set_tracking_uri('{ws.tracking_uri}'); "
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
    if args.version:
        from alignment.data.version import version_dataset

        version = version_dataset(ws, cfg.ingest.dataset, out)
        print(
            f"data version {version.id} ({'new' if version.created else 'already versioned'}), tag {version.tag}"
        )
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


def cmd_model_prepare(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.models import resolve_base_model
    from alignment.workspace import Workspace

    corpus = None
    if (
        cfg.model.source == "tiny"
        and cfg.ingest.input is not None
        and Path(cfg.ingest.input).exists()
    ):
        corpus = _corpus_from(Path(cfg.ingest.input))
    path = resolve_base_model(cfg.model, Workspace.from_config(cfg.workspace).ensure(), corpus)
    print(path)
    _write_json(args.json, {"path": str(path)})
    return 0


def _corpus_from(path: Path) -> list[str]:
    """Raw text lines to train the tiny tokenizer on (best effort; the tokenizer is byte-level)."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        return [line for _, line in zip(range(50_000), fh, strict=False)]


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
    )
    print(f"{args.method} finished in {result.wall_seconds:.0f} s; model at {result.output_dir}")
    _write_json(args.json, {"output_dir": str(result.output_dir), "metrics": result.metrics})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from alignment.evaluation.dpo import evaluate_dpo_policy

    metrics = evaluate_dpo_policy(
        Path(args.policy), Path(args.reference), Path(args.data), cfg.evaluation, cfg.train.dpo.beta
    )
    for key, value in metrics.items():
        print(f"{key:28s} {value:.4f}")
    _write_json(args.out, metrics)
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from mlflow import MlflowClient

    from alignment import registry
    from alignment.workspace import Workspace

    registry.connect(Workspace.from_config(cfg.workspace), cfg.registry.experiment)
    client = MlflowClient()
    ref = args.ref or cfg.registry.model_name
    name, _, selector = ref.replace("@", " @").replace("/", " /").partition(" ")
    if selector.startswith("@"):
        versions = [client.get_model_version_by_alias(name, selector[1:])]
    elif selector.startswith("/"):
        versions = [client.get_model_version(name, selector[1:])]
    else:
        versions = sorted(
            client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)
        )
    aliases = client.get_registered_model(name).aliases
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    for v in versions:
        print(
            f"{name} version {v.version}  aliases: {', '.join(by_version.get(str(v.version), [])) or '-'}  run {v.run_id}"
        )
        for key in sorted(v.tags):
            print(f"    {key:24s} {v.tags[key]}")
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
    p.set_defaults(func=cmd_pipeline)

    data = sub.add_parser("data", help="preference data").add_subparsers(
        dest="data_command", required=True
    )
    p = data.add_parser("ingest", help="read, normalize and validate a preference file")
    _common(p)
    p.add_argument("--input", "-i", help="raw file (overrides ingest.input)")
    p.add_argument("--out", help="folder for accepted/rejected rows and the report")
    p.add_argument("--version", action="store_true", help="also version the result with DVC")
    p.set_defaults(func=cmd_ingest)
    p = data.add_parser("versions", help="list the recorded versions of a dataset")
    _common(p)
    p.add_argument("--dataset", help="dataset name (default ingest.dataset)")
    p.set_defaults(func=cmd_versions)

    model = sub.add_parser("model", help="base models").add_subparsers(
        dest="model_command", required=True
    )
    p = model.add_parser(
        "prepare", help="build or convert the configured base model; print its folder"
    )
    _common(p)
    p.set_defaults(func=cmd_model_prepare)

    p = sub.add_parser("train", help="run one training method as a DeepSpeed job")
    _common(p)
    p.add_argument("method", choices=["sft", "dpo"])
    p.add_argument("--model", required=True, help="starting checkpoint folder")
    p.add_argument("--train-data", required=True, help="canonical preference Parquet")
    p.add_argument("--eval-data", help="held-out canonical Parquet")
    p.add_argument("--output", required=True, help="job folder (checkpoints, log, final model)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="held-out DPO reward accuracy and margin of a policy")
    _common(p)
    p.add_argument("--policy", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--data", required=True, help="held-out canonical Parquet")
    p.add_argument("--out", help="write metrics JSON here")
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
