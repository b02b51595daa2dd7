"""The platform's one console script: ``alignment <stage> ...``. Parses, then calls a stage.

One module per command group; each has ``register`` (its parsers) and its ``cmd_*`` functions.
"""

from __future__ import annotations

import argparse
import sys

from alignment.cli import cai, data, flows, models, oracle, serve, train, watch
from alignment.errors import AlignmentError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignment", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    flows.register(sub)
    data.register(sub)
    cai.register(sub)
    models.register(sub)
    train.register(sub)
    oracle.register(sub)
    serve.register(sub)
    watch.register(sub)
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
