"""What every command shares: the environment, the config, overrides, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

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


def set_environment(workspace_root: Path) -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Prefect's embedded API keeps its database in the workspace, beside MLflow's
    if "PREFECT_API_URL" not in os.environ:
        os.environ.setdefault("PREFECT_HOME", str(workspace_root / "prefect"))
        Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


def config_from(args: argparse.Namespace):
    """The typed config from --config, --set and --workspace; sets the quiet environment."""
    from alignment.config import load_config

    cfg = load_config(args.config, overrides_from(args))
    set_environment(cfg.workspace.root.expanduser().resolve())
    return cfg


def write_json(path: str | None, payload: dict) -> None:
    if path:
        from alignment.workspace import atomic_write_text

        atomic_write_text(Path(path), json.dumps(payload, indent=2, default=str) + "\n")


def overrides_from(args: argparse.Namespace) -> list[str]:
    """The --set overrides, plus --workspace as ``workspace.root``."""
    overrides = list(args.set or [])
    if getattr(args, "workspace", None):
        overrides.append(f"workspace.root={args.workspace}")
    return overrides


def tool_path(name: str) -> str:
    """The command for a tool of this environment, runnable without activating the venv."""
    path = Path(sys.executable).parent / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def actor_name(given: str | None) -> str:
    import getpass

    if given:
        return given
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML config file (defaults apply without one)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.dpo.beta=0.2"
    )
    p.add_argument("--workspace", help="workspace folder (overrides workspace.root)")
    p.add_argument("--json", help="also write the result as JSON to this file")
