"""``alignment serve NAME@champion`` and ``alignment feedback pairs``."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from alignment.cli.common import add_common, config_from, write_json
from alignment.errors import ConfigError


def cmd_serve(args: argparse.Namespace) -> int:
    from alignment.serve.server import (
        TOKEN_ENV,
        check_exposure,
        make_server,
        open_endpoint,
        quiet_omp_workers,
    )

    quiet_omp_workers()  # before anything imports torch
    cfg = config_from(args)
    from alignment.workspace import Workspace

    serve_cfg = cfg.serve
    host = args.host or serve_cfg.host
    token = os.environ.get(TOKEN_ENV) or None
    check_exposure(host, token)  # before loading the models
    from alignment.champion import champion_ref

    ws = Workspace.from_config(cfg.workspace).ensure()
    # with registry.production_model, @champion and @previous are that model's aliases
    ref = champion_ref(args.ref, cfg.registry.model_name, cfg.registry.production_model)
    endpoint = open_endpoint(ws, serve_cfg, ref, cfg.registry.model_name, args.shadow)
    port = serve_cfg.port if args.port is None else args.port
    server = make_server(endpoint, host, port, token)
    policy, shadow = endpoint.policy, endpoint.shadow
    shadowing = f", shadow {shadow.name}/{shadow.version}" if shadow else ""
    print(
        f"serving {policy.name}/{policy.version} ({policy.alias or 'pinned'}){shadowing} "
        f"on http://{host}:{server.server_address[1]}",
        flush=True,
    )

    def stop(signum, frame):  # shutdown() waits for serve_forever: call it from another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()  # waits for requests in flight
        endpoint.close()  # answers the shadow requests still queued
    print(f"stopped: {endpoint.counts}", flush=True)
    write_json(args.json, endpoint.counts)
    return 0


def cmd_feedback_pairs(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment import registry
    from alignment.serve.pairs import export_feedback_pairs
    from alignment.workspace import Workspace

    landing = args.landing or cfg.serve.landing or cfg.retrain.landing
    if landing is None:
        raise ConfigError("no landing folder: set serve.landing or retrain.landing, or --landing")
    ws = Workspace.from_config(cfg.workspace)
    reviser = None
    if args.revise:
        from alignment.serve.revise import open_reviser

        reviser = open_reviser(cfg)
    experiment_id = registry.connect(ws, cfg.serve.experiment)
    result = export_feedback_pairs(experiment_id, Path(landing), reviser)
    skipped = ", ".join(f"{why} {n}" for why, n in sorted(result.skipped.items())) or "none"
    print(f"{len(result.pairs)} pairs -> {result.path or 'nothing written'} (no pair: {skipped})")
    write_json(
        args.json,
        {
            "path": str(result.path) if result.path else None,
            "pairs": len(result.pairs),
            "skipped": dict(result.skipped),
        },
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="HTTP endpoint for a registered policy: traces answers, takes feedback"
    )
    p.add_argument("ref", help="NAME@alias (e.g. aligned-policy@champion) or NAME/version")
    p.add_argument(
        "--shadow",
        help="NAME@alias that also answers serve.shadow_share of requests, never returned",
    )
    p.add_argument("--host", help="address to listen on (overrides serve.host)")
    p.add_argument("--port", type=int, help="port, 0 for a free one (overrides serve.port)")
    add_common(p)
    p.set_defaults(func=cmd_serve)

    feedback = sub.add_parser("feedback", help="user feedback on served answers")
    fsub = feedback.add_subparsers(dest="feedback_command", required=True)
    p = fsub.add_parser(
        "pairs", help="write consented feedback as preference pairs to the landing folder"
    )
    p.add_argument("--landing", help="folder (overrides serve.landing and retrain.landing)")
    p.add_argument(
        "--revise",
        action="store_true",
        help="pair a thumbs-down answer no shadow answered with its CAI revision "
        "(cai.feedback_model under cai.constitution)",
    )
    add_common(p)
    p.set_defaults(func=cmd_feedback_pairs)
