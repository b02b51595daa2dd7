"""``alignment watch run|serve``: the watch over the served champion's traces."""

from __future__ import annotations

import argparse
from pathlib import Path

from alignment.cli.common import add_common, config_from, overrides_from, write_json
from alignment.errors import AlignmentError


def cmd_watch_run(args: argparse.Namespace) -> int:
    config_from(args)
    from flows.watch import watch_flow

    result = watch_flow(
        config_path=args.config,
        overrides=overrides_from(args),
        end_ms=args.end_ms,
        window_minutes=args.window_minutes,
    )
    print(f"report {result['report']}")
    write_json(args.json, result)
    return 4 if result["alerts"] else 0


def cmd_watch_serve(args: argparse.Namespace) -> int:
    """Serve the watch flow as a scheduled deployment (one per use case) until stopped."""
    cfg = config_from(args)
    cron = args.cron or cfg.watch.cron
    if not cron:
        raise AlignmentError("no schedule: pass --cron or set watch.cron in the config")
    from prefect import serve

    from flows.watch import watch_flow

    name = f"watch-{cfg.registry.model_name}"
    deployment = watch_flow.to_deployment(
        name=name,
        cron=cron,
        parameters={
            "config_path": str(Path(args.config).resolve()) if args.config else None,
            "overrides": overrides_from(args),
        },
        concurrency_limit=1,
        tags=["watch", cfg.registry.model_name],
    )
    print(f"serving {name} on '{cron}'; Ctrl-C stops")
    serve(deployment)
    return 0


def register(sub) -> None:
    watch = sub.add_parser(
        "watch", help="watch the served champion's traces against its evaluation"
    )
    wsub = watch.add_subparsers(dest="watch_command", required=True)
    p = wsub.add_parser(
        "run", help="one window: measure, compare, report, alert (exit 4 on an alert)"
    )
    p.add_argument(
        "--window-minutes", type=float, help="window length (overrides watch.window_minutes)"
    )
    p.add_argument("--end-ms", type=int, help="window end, epoch milliseconds (default now)")
    add_common(p)
    p.set_defaults(func=cmd_watch_run)
    p = wsub.add_parser("serve", help="serve the watch on a cron schedule")
    p.add_argument("--cron", help="schedule, e.g. '*/30 * * * *' (overrides watch.cron)")
    add_common(p)
    p.set_defaults(func=cmd_watch_serve)
