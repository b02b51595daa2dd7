"""``alignment oracle data|eval``: the built-in demonstration task (alignment/oracle)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from alignment.cli.common import add_common, config_from, write_json


def _oracle_settings(args: argparse.Namespace, cfg):
    """Flags first; the device falls back to the config's ``evaluation.device``."""
    from alignment.oracle.experiment import OracleSettings
    from alignment.train.deepspeed import resolve_device

    given = {
        key: getattr(args, key)
        for key in ("seed", "bt_temperature", "max_new_tokens", "device")
        if getattr(args, key, None) is not None
    }
    given.setdefault("device", resolve_device(cfg.evaluation.device))
    return OracleSettings(**given)


def cmd_oracle_data(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.oracle.experiment import demonstration_data, read_records
    from alignment.oracle.task import label_agreement
    from alignment.workspace import Workspace

    settings = _oracle_settings(args, cfg)
    out = Path(args.out) if args.out else _default_out(Workspace.from_config(cfg.workspace))
    files = demonstration_data(out, settings, Path(args.policy) if args.policy else None)
    summary = {}
    for name, path in files.items():
        records = read_records(path)
        summary[name] = {"path": str(path), "records": len(records)}
        if name != "sft":
            summary[name]["label_agreement_with_oracle"] = label_agreement(records)
        print(f"{name:22s} {len(records):6d} records  {path}")
    write_json(args.json, summary)
    return 0


def _default_out(ws) -> Path:
    return ws.ensure().runs / f"oracle-data-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_oracle_eval(args: argparse.Namespace) -> int:
    import dataclasses

    cfg = config_from(args)
    from alignment.oracle import experiment

    settings = _oracle_settings(args, cfg)
    if args.samples_per_prompt:
        settings = dataclasses.replace(settings, eval_samples_per_prompt=args.samples_per_prompt)
    base = experiment.baseline(Path(args.sft), settings)
    metrics = experiment.evaluate(Path(args.policy), Path(args.sft), base, settings)
    metrics["sft_oracle_reward"] = float(base.rewards.mean())
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"{key:24s} {value:.4f}")
    write_json(args.json, metrics)
    return 0


def register(sub) -> None:
    """``alignment oracle ...``."""
    oracle = sub.add_parser(
        "oracle", help="the oracle task: reviews scored by a known sentiment lexicon"
    ).add_subparsers(dest="oracle_command", required=True)
    p = oracle.add_parser("data", help="write the demonstration dataset (SFT + labelled pairs)")
    add_common(p)
    p.add_argument(
        "--out", help="folder for sft.jsonl and the preference files (default: under runs/)"
    )
    p.add_argument("--policy", help="sample the pairs from this model (default: the grammar)")
    p.add_argument("--seed", type=int)
    p.add_argument("--bt-temperature", type=float, help="Bradley-Terry noise (0: noiseless)")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument(
        "--device", help="cpu or cuda, sampling with --policy (default evaluation.device)"
    )
    p.set_defaults(func=cmd_oracle_data)
    p = oracle.add_parser(
        "eval", help="oracle reward, win rate and KL of a policy against the SFT policy"
    )
    add_common(p)
    p.add_argument("--policy", required=True, help="policy model folder")
    p.add_argument("--sft", required=True, help="the SFT policy it started from")
    p.add_argument("--samples-per-prompt", type=int, help="samples per held-out prompt")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--device", help="cpu or cuda (default evaluation.device)")
    p.set_defaults(func=cmd_oracle_eval)
