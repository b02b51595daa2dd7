"""``alignment cai check|sl|label|review``: the two Constitutional AI phases step by step."""

from __future__ import annotations

import argparse
from pathlib import Path

from alignment.cli.common import add_common, config_from, overrides_from, write_json
from alignment.errors import AlignmentError


def _cai_setup(args: argparse.Namespace):
    cfg = config_from(args)
    from alignment.cai.prompts import collect_prompts
    from alignment.constitution import load_constitution

    constitution = load_constitution(args.constitution or cfg.cai.constitution)
    prompts = collect_prompts(
        args.prompts or cfg.cai.prompts,
        cfg.cai.red_team_packages,
        cfg.cai.package_prompt_limit,
        cfg.cai.max_prompts,
        cfg.cai.prompts_per_kind,
    )
    return cfg, constitution, prompts


def cmd_cai_check(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.constitution import load_constitution

    c = load_constitution(args.file or cfg.cai.constitution)
    print(f"{c.name} version {c.version}  hash {c.hash}")
    for p in c.principles:
        print(f"  {p.name:20s} weight {p.weight:g}")
    print(f"  {len(c.examples)} few-shot examples")
    write_json(args.json, {"name": c.name, "version": c.version, "hash": c.hash})
    return 0


def cmd_cai_sl(args: argparse.Namespace) -> int:
    cfg, constitution, prompts = _cai_setup(args)
    from alignment.cai.critique import require_sft_rows, run_sl_phase
    from alignment.cai.generate import GenerationSettings, open_generator

    settings = GenerationSettings.from_config(cfg.cai, cfg.cai.sl_temperature)
    with open_generator(args.model, cfg.cai.num_processes) as generator:
        result = run_sl_phase(
            generator, prompts, constitution, Path(args.out), settings, cfg.cai.revision_rounds,
            cfg.cai.few_shot, cfg.cai.seed, model_name=args.model,
        )  # fmt: skip
    print(
        f"{result.prompts} prompts, {result.rows} SFT rows ({result.sft_path}); "
        f"audit {result.audit_path}; constitution {result.constitution_hash}"
    )
    print(result.empty_summary())
    write_json(args.json, {**result.__dict__})
    require_sft_rows(result)
    return 0


def cmd_cai_label(args: argparse.Namespace) -> int:
    cfg, constitution, prompts = _cai_setup(args)
    from alignment.cai.feedback import label_prompts, require_pairs
    from alignment.cai.generate import GenerationSettings, load_model, open_generator

    judge = args.judge or cfg.cai.feedback_model or args.model
    judge_model, judge_tokenizer = load_model(judge)
    settings = GenerationSettings.from_config(cfg.cai, cfg.cai.rl_temperature)
    with open_generator(args.model, cfg.cai.num_processes) as generator:
        result = label_prompts(
            generator, judge_model, judge_tokenizer, prompts, constitution, Path(args.out),
            settings, judge_name=str(judge), seed=cfg.cai.seed,
            judge_batch_size=cfg.cai.judge_batch_size, chain_of_thought=cfg.cai.chain_of_thought,
            cot_max_new_tokens=cfg.cai.cot_max_new_tokens, clamp=cfg.cai.cot_clamp,
        )  # fmt: skip
    print(f"{result.pairs} AI-labelled pairs ({result.skipped} skipped) -> {result.path}")
    print(result.skipped_summary())
    write_json(args.json, {**result.__dict__})
    require_pairs(result)
    return 0


def cmd_cai_review(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.cai.review import apply_review, read_verdicts, sample_for_review

    if args.action == "pause":
        from flows.cai import cai_review_flow

        overrides = overrides_from(args)
        result = cai_review_flow(
            labelled=str(Path(args.labelled).resolve()),
            config_path=args.config,
            overrides=overrides,
            timeout_seconds=args.timeout,
        )
        rate = "-" if result.agreement_rate is None else f"{result.agreement_rate:.1%}"
        print(f"reviewed {result.reviewed}: agree {result.agreed}, flip {result.flipped}; "
              f"AI-human agreement {rate}")  # fmt: skip
        write_json(args.json, {**result.__dict__})
        return 0
    if not args.csv:
        raise AlignmentError(f"cai review {args.action} needs --csv")
    if args.action == "sample":
        sheet = sample_for_review(
            args.labelled, args.csv, args.n or cfg.cai.review_sample_size, cfg.cai.seed
        )
        print(f"review sheet {sheet}: write agree or flip in the verdict column")
        return 0
    result = apply_review(args.labelled, read_verdicts(args.csv), args.out)
    rate = "-" if result.agreement_rate is None else f"{result.agreement_rate:.1%}"
    print(f"reviewed {result.reviewed}: agree {result.agreed}, flip {result.flipped}; "
          f"AI-human agreement {rate}")  # fmt: skip
    payload = {**result.__dict__}
    if args.version and result.out_path is not None:
        from alignment.data.ingest import ingest_file
        from alignment.data.version import version_dataset
        from alignment.workspace import Workspace, unique_dir

        ws = Workspace.from_config(cfg.workspace).ensure()
        out = unique_dir(ws.staging, f"{cfg.cai.rl_dataset}-review")
        ingest_cfg = cfg.ingest.model_copy(update={"dataset": cfg.cai.rl_dataset})
        ingest_file(result.out_path, out, ingest_cfg, cfg.validation)
        version = version_dataset(ws, cfg.cai.rl_dataset, out)
        print(f"data version {version.id} ({'new' if version.created else 'unchanged'})")
        payload["data_version"] = version.to_dict()
    write_json(args.json, payload)
    return 0


def register(sub) -> None:
    """``alignment cai ...``."""
    cai = sub.add_parser("cai", help="constitutional AI").add_subparsers(
        dest="cai_command", required=True
    )
    p = cai.add_parser("check", help="validate a constitution; print its hash and principles")
    add_common(p)
    p.add_argument("file", nargs="?", help="constitution YAML (default cai.constitution)")
    p.set_defaults(func=cmd_cai_check)
    for name, func, what in (
        ("sl", cmd_cai_sl, "SL phase: answer, critique, revise; write sft.jsonl + audit.jsonl"),
        ("label", cmd_cai_label, "RL phase: sample two responses, AI-judge them; write pairs"),
    ):
        p = cai.add_parser(name, help=what)
        add_common(p)
        p.add_argument("--model", required=True, help="model folder that generates")
        p.add_argument("--out", required=True, help="output folder (sl) or JSONL file (label)")
        p.add_argument("--prompts", help="prompt JSONL (default cai.prompts)")
        p.add_argument("--constitution", help="constitution YAML (default cai.constitution)")
        if name == "label":
            p.add_argument("--judge", help="feedback model folder (default: cai.feedback_model)")
        p.set_defaults(func=func)
    p = cai.add_parser(
        "review",
        help="human review of AI labels: sample to CSV, apply a filled CSV, or pause a Prefect "
        "run for verdicts given in the UI",
    )
    add_common(p)
    p.add_argument("action", choices=["sample", "apply", "pause"])
    p.add_argument("--labelled", required=True, help="AI-labelled pairs (JSONL or Parquet)")
    p.add_argument("--csv", help="review sheet to write (sample) or read (apply)")
    p.add_argument(
        "--timeout", type=int, default=86_400, help="pause: seconds to wait for the verdicts"
    )
    p.add_argument("--n", type=int, help="pairs to sample (default cai.review_sample_size)")
    p.add_argument("--out", help="apply: write all pairs, flips applied, to this JSONL")
    p.add_argument("--version", action="store_true", help="apply: ingest and version --out")
    p.set_defaults(func=cmd_cai_review)
