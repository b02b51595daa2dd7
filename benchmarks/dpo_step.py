"""DPO step cost: TRL as users run it against the platform's DPO and the floor, same batches.

Variants, each in its own process (so each has its own peak memory), interleaved round by round
(a, a2, a3, b, c, then again) so that machine noise favours none; medians over the rounds:
  a   TRL's DPOTrainer with its defaults (reference model loaded, gradient checkpointing on)
  a2  TRL's DPOTrainer with precompute_ref_log_probs=True
  a3  TRL's best flags: precompute_ref_log_probs=True and gradient_checkpointing=False
  b   the platform's DPO (alignment.methods.dpo: the LM head on completion positions only,
      cached reference log-probs, the platform's training arguments)
  c   the floor: the least work that gives the same update. Backbone forward; the LM head on
      completion positions only; log-softmax and gather; per-sequence sums; the sigmoid DPO
      loss against reference log-probs read from the batch (computed before the timed steps);
      backward; gradient clipping and fused AdamW (no weight decay) with a linear schedule, as
      the trainers default to.
      No trainer, no reference model, no extra metrics.
Model: a Llama of about 16M parameters with SmolLM2's 49,152-token vocabulary, random weights
(--model smollm2-135m: SmolLM2-135M's shape). Data: random word-level token ids over the whole
vocabulary through a chat template, prompts and answers of varied length up to --max-length.
CPU: fp32, no DeepSpeed. GPU (--device cuda): bf16, DeepSpeed ZeRO-2 for a/a2/a3/b, reports MFU
on the useful work only (the positions actually projected through the head, real lengths).
Exits non-zero when b is faster than c by more than 5%: a floor the platform beats is no floor.
Prints a table, writes benchmarks/results/dpo_step.json, and prints that JSON as the last line.

    python benchmarks/dpo_step.py                      # CPU, 16M model, 3 rounds of 2 + 5 steps
    python benchmarks/dpo_step.py --device cuda --max-length 1024 --model smollm2-135m
    python benchmarks/dpo_step.py --smoke              # seconds: a tiny model, for the tests
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# the variants and the model they run on (build_model_and_data is imported from here by gpu_check)
from dpo_variants import MODELS, VOCAB, build_model_and_data, run_variant

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("a", "a2", "a3", "b", "c")


def _table(results: dict) -> str:
    lines = [
        f"{'variant':8} {'s/step':>8} {'rounds':>20} {'tokens/s':>10} {'peak MB':>9} "
        f"{'loss@last':>12} {'MFU':>6}"
    ]
    for v, r in results.items():
        mfu = f"{r['mfu']:.3f}" if r.get("mfu") is not None else "-"
        rounds = "/".join(f"{s:.2f}" for s in r["round_s_per_step"])
        lines.append(
            f"{v:8} {r['s_per_step']:8.3f} {rounds:>20} {r['tokens_per_s']:10.0f} "
            f"{r['peak_memory_mb']:9.0f} {r['losses'][-1]:12.7f} {mfu:>6}"
        )
    return "\n".join(lines)


def _combine(runs: list[dict]) -> dict:
    """One variant's rounds: medians of the per-round medians; losses must agree across rounds."""
    first = runs[0]
    out = {**first}
    out["round_s_per_step"] = [r["s_per_step"] for r in runs]
    out["s_per_step"] = statistics.median(out["round_s_per_step"])
    out["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in runs)
    out["peak_memory_mb"] = max(r["peak_memory_mb"] for r in runs)
    if all(r.get("mfu") is not None for r in runs):
        out["mfu"] = statistics.median(r["mfu"] for r in runs)
    out.pop("step_times", None)
    out["step_times_by_round"] = [r["step_times"] for r in runs]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="llama-16m")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=None, help="256 on CPU, 1024 on GPU")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all variants")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU bf16 peak, for MFU")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny model, one round, variants in this process: checks the code paths in "
        "seconds (its timings mean nothing)",
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "dpo_step.json"
    )
    parser.add_argument("--_variant", help=argparse.SUPPRESS)
    parser.add_argument("--_folder", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    vocab = VOCAB
    if opts.smoke:
        opts.model, vocab, opts.rounds, opts.warmup, opts.steps = "toy", 512, 1, 1, 2
        opts.batch_size, opts.max_length = 2, opts.max_length or 48
    opts.max_length = opts.max_length or (1024 if opts.device == "cuda" else 256)

    if opts._variant:  # a child process: one variant, its JSON on the last line
        print(json.dumps(run_variant(opts, opts._variant, opts._folder)), flush=True)
        return 0

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    variants = opts.variants.split(",")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="dpo-step-") as tmp:
        folder = Path(tmp)
        rows = opts.batch_size * (opts.warmup + opts.steps)
        build_model_and_data(folder, opts.model, rows, opts.max_length, opts.seed, vocab)
        own_args = [
            a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--_")
        ]
        for round_no in range(opts.rounds):
            for variant in variants:  # interleaved: a, a2, a3, b, c, then again
                if opts.smoke:
                    runs[variant].append(run_variant(opts, variant, folder))
                    continue
                command = [sys.executable, __file__, *own_args]
                command += ["--_variant", variant, "--_folder", str(folder)]
                proc = subprocess.run(command, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-6000:])
                    raise SystemExit(f"variant {variant} failed (exit {proc.returncode})")
                runs[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(
                    f"round {round_no + 1}/{opts.rounds} {variant}: "
                    f"{runs[variant][-1]['s_per_step']:.3f} s/step",
                    file=sys.stderr,
                    flush=True,
                )

    import torch

    results = {v: _combine(r) for v, r in runs.items()}
    ratios = {}
    for key, den in (
        ("ratio_vs_floor", "c"),
        ("ratio_vs_trl_default", "a"),
        ("ratio_vs_trl_precompute", "a2"),
        ("ratio_vs_trl_best", "a3"),
    ):
        if "b" in results and den in results:
            ratios[key] = results["b"]["s_per_step"] / results[den]["s_per_step"]
    # Every variant makes the same updates from the same start: DPO's loss is log 2 at step 1
    # whatever the code, so compare every step, in every round, against TRL's default.
    loss_diffs = {}
    if "a" in results:
        for v in results:
            if v != "a":
                loss_diffs[v] = max(
                    abs(x - y)
                    for run in runs[v]
                    for x, y in zip(run["losses"], results["a"]["losses"], strict=True)
                )
    targets = {
        "ratio_vs_floor": 1.10,
        "ratio_vs_trl_best": 0.7,
        "loss_abs_diff": 1e-5,
        "floor_is_a_floor": 0.95,  # b/c below this: the floor does more than it must
        "gpu_mfu": 0.4,
    }
    meets = {}
    if "ratio_vs_floor" in ratios:
        meets["ratio_vs_floor"] = ratios["ratio_vs_floor"] <= targets["ratio_vs_floor"]
        meets["floor_is_a_floor"] = ratios["ratio_vs_floor"] >= targets["floor_is_a_floor"]
    if "ratio_vs_trl_best" in ratios:
        meets["ratio_vs_trl_best"] = ratios["ratio_vs_trl_best"] <= targets["ratio_vs_trl_best"]
    if "b" in loss_diffs:
        meets["loss_equal_to_trl"] = loss_diffs["b"] <= targets["loss_abs_diff"]
    if opts.device == "cuda" and results.get("b", {}).get("mfu") is not None:
        meets["gpu_mfu"] = results["b"]["mfu"] >= targets["gpu_mfu"]
    report = {
        "benchmark": "dpo_step",
        "model": opts.model,
        "device": opts.device if opts.device == "cpu" else torch.cuda.get_device_name(),
        "threads": opts.threads or torch.get_num_threads(),
        "batch_size": opts.batch_size,
        "max_length": opts.max_length,
        "warmup_steps": opts.warmup,
        "measured_steps": opts.steps,
        "rounds": opts.rounds,
        "smoke": opts.smoke,
        "variants": results,
        **ratios,
        "loss_max_abs_diff_vs_trl_default": loss_diffs,
        "targets": targets,
        "meets": meets,
    }
    print(_table(results))
    print("  ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    print("meets: " + "  ".join(f"{k} {'yes' if v else 'NO'}" for k, v in meets.items()))
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    if not opts.smoke and meets.get("floor_is_a_floor") is False:
        print(
            f"error: the platform ran at {ratios['ratio_vs_floor']:.2f}x its floor: "
            "the floor does more work than it must",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
