"""``alignment oracle data|eval|sycophancy``: the built-in demonstration task (alignment/oracle)
and its planted-flaw variants (``--task reward_hacking|sycophancy``)."""

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
        for key in (
            "seed",
            "bt_temperature",
            "max_new_tokens",
            "device",
            "task",
            "filler_strength",
            "length_strength",
            "filler_rate",
            "sycophancy_strength",
        )
        if getattr(args, key, None) is not None
    }
    given.setdefault("device", resolve_device(cfg.evaluation.device))
    return OracleSettings(**given)


def cmd_oracle_data(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.oracle.experiment import demonstration_data, read_records
    from alignment.oracle.flaws import flaw_in_labels
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
            summary[name] |= flaw_in_labels(records, settings.task)
        print(f"{name:22s} {len(records):6d} records  {path}")
        flaw = summary[name].get("chosen_has_more_of_the_flaw")
        if flaw is not None:
            print(f"{'':22s} chosen carries more of the planted flaw in {flaw:.3f} of pairs")
    summary["task"] = settings.task
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


def cmd_oracle_sycophancy(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.oracle.evaluate import load_policy
    from alignment.oracle.flaws import measure_sycophancy

    settings = _oracle_settings(args, cfg)
    model, tokenizer = load_policy(Path(args.policy), settings.device)
    products = settings.split().test_products
    metrics = measure_sycophancy(
        model, tokenizer, products, args.samples_per_prompt, settings.max_new_tokens,
        settings.seed + 5000,
    )  # fmt: skip
    low, high = metrics["sycophancy_shift_ci"]
    print(f"sycophancy_shift {metrics['sycophancy_shift']:.4f} [{low:.4f}, {high:.4f}] over "
          f"{metrics['probe_pairs']} paired prompts on held-out products")  # fmt: skip
    print(f"honest_reward    {metrics['honest_reward']:.4f}")
    write_json(args.json, metrics)
    return 0


def _flaw_flags(p) -> None:
    p.add_argument(
        "--task",
        choices=("reviews", "reward_hacking", "sycophancy"),
        help="reviews (default), or a planted-flaw variant whose labels are not the truth",
    )
    p.add_argument("--filler-strength", type=float, help="reward_hacking: bonus per filler phrase")
    p.add_argument("--length-strength", type=float, help="reward_hacking: bonus per word")
    p.add_argument("--filler-rate", type=float, help="reward_hacking: demonstrations with filler")
    p.add_argument(
        "--sycophancy-strength", type=float, help="sycophancy: weight of agreeing with the user"
    )


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
    _flaw_flags(p)
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
    p = oracle.add_parser(
        "sycophancy",
        help="sycophancy shift of a policy: response sentiment change when only the stated "
        "opinion flips, on held-out products (0: unmoved)",
    )
    add_common(p)
    p.add_argument("--policy", required=True, help="policy model folder")
    p.add_argument("--samples-per-prompt", type=int, default=4, help="samples per probe prompt")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--device", help="cpu or cuda (default evaluation.device)")
    p.set_defaults(func=cmd_oracle_sycophancy)
