"""``alignment train METHOD`` and ``alignment evaluate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from alignment.cli.common import add_common, config_from, write_json


def cmd_train(args: argparse.Namespace) -> int:
    if args.node_rank is not None:
        args.set = [*(args.set or []), f"train.distributed.node_rank={args.node_rank}"]
    cfg = config_from(args)
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
    write_json(args.json, {"output_dir": str(result.output_dir), "metrics": result.metrics})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    if args.suite:
        return _evaluate_suite(args, cfg)
    from alignment.evaluation.dpo import evaluate_dpo_policy

    metrics = evaluate_dpo_policy(
        Path(args.policy), Path(args.reference), Path(args.data), cfg.evaluation, cfg.train.dpo.beta
    )
    for key, value in metrics.items():
        print(f"{key:28s} {value:.4f}")
    write_json(args.out, metrics)
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
        judge_model=Path(judge)
        if (judge := args.judge_model or cfg.evaluation.judge_model)
        else None,
        beta=cfg.train.dpo.beta,
        out_dir=Path(args.report_dir) if args.report_dir else None,
    )
    print(format_table(metrics, f"evaluation of {args.policy}"))
    write_json(args.out, metrics)
    return 0


def register(sub) -> None:
    """``alignment train`` and ``alignment evaluate``."""
    p = sub.add_parser("train", help="run one training method as a DeepSpeed job")
    add_common(p)
    p.add_argument("method", choices=["sft", "dpo", "kto", "reward", "ppo", "rloo", "grpo"])
    p.add_argument("--reward-model", help="reward model folder (ppo, rloo, grpo)")
    p.add_argument("--model", required=True, help="starting checkpoint folder")
    p.add_argument("--train-data", required=True, help="canonical preference Parquet")
    p.add_argument("--eval-data", help="held-out canonical Parquet")
    p.add_argument("--output", required=True, help="job folder (checkpoints, log, final model)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--node-rank",
        type=int,
        help="this node's index in a multi-node job (train.distributed.node_rank); every node "
        "runs the same command with its own",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="held-out DPO reward accuracy and margin of a policy (--suite: the full suite)",
    )
    add_common(p)
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
