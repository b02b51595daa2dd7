"""``alignment oracle data|eval``: the built-in demonstration task (alignment/oracle)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alignment.cli.common import write_json


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
    write_json(args.json, summary)
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
    write_json(args.json, metrics)
    return 0


def register(sub) -> None:
    """``alignment oracle ...``."""
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
