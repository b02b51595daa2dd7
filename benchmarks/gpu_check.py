"""The GPU figures in one run: DPO step cost and MFU, PPO throughput, ZeRO-3 peak memory.

1. DPO step (benchmarks/dpo_step.py): TRL's best setting (a3: reference log-probs precomputed,
   no gradient checkpointing),
   the platform's DPO (b) and the fair floor (c), bf16, 1024-token sequences, SmolLM2-135M's
   shape; tokens/s and MFU of each (target: the platform's MFU >= 0.4).
2. PPO: a real `ppo` job (rollout, score, update) through the platform's launcher; rollouts
   (episodes) per second and steps per second.
3. ZeRO-3: a real `dpo` job at ZeRO stage 3; its peak allocated memory per process.
Models have random weights (throughput does not depend on them). ``--dry-run`` runs the same
code paths on CPU at toy size, in seconds. Writes one JSON and prints it as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (dpo_step arguments, PPO and ZeRO-3 job sizes) for a GPU and for a CPU dry run
SIZES = {
    "gpu": {
        "device": "cuda",
        "model": "smollm2-135m",
        "max_length": 1024,
        "dpo_step": ["--batch-size", "8", "--warmup", "3", "--steps", "10"],
        "job_batch": 8,
        "job_steps": 8,
        "ppo_new_tokens": 128,
    },
    "dry-run": {
        "device": "cpu",
        "model": "toy",
        "max_length": 48,
        "dpo_step": [
            *("--batch-size", "2", "--warmup", "1", "--steps", "1"),
            *("--threads", "1", "--rounds", "1"),
        ],
        "job_batch": 2,
        "job_steps": 2,
        "ppo_new_tokens": 4,
    },
}


def dpo_step(size: dict, folder: Path) -> dict:
    """dpo_step.py with variants a3, b, c; its report, read back from the JSON it writes.

    dpo_step.py exits 1 when the platform beats its floor (the floor would be wrong); the
    report is still written and that verdict is kept in it, not turned into a crash here.
    """
    out = folder / "dpo_step.json"
    command = [
        sys.executable, str(HERE / "dpo_step.py"),
        "--device", size["device"], "--model", size["model"],
        "--max-length", str(size["max_length"]), "--variants", "a3,b,c",
        "--output", str(out), *size["dpo_step"],
    ]  # fmt: skip
    proc = subprocess.run(command, stdout=subprocess.DEVNULL)
    if proc.returncode not in (0, 1) or not out.is_file():
        raise SystemExit(f"dpo_step.py failed (exit {proc.returncode})")
    report = json.loads(out.read_text())
    variants = report["variants"]
    names = {"a3": "trl_best", "b": "platform", "c": "floor"}
    return {
        "model": report["model"],
        "max_length": report["max_length"],
        "batch_size": report["batch_size"],
        **{
            names[v]: {
                "s_per_step": r["s_per_step"],
                "tokens_per_s": r["tokens_per_s"],
                "mfu": r.get("mfu"),
                "peak_memory_mb": r["peak_memory_mb"],
            }
            for v, r in variants.items()
        },
        "ratio_vs_floor": report.get("ratio_vs_floor"),
        "ratio_vs_trl_best": report.get("ratio_vs_trl_best"),
        "meets": report["meets"],
        "mfu_target": report["targets"]["gpu_mfu"],
    }


def build_models(size: dict, folder: Path) -> tuple[Path, Path, Path]:
    """Policy, reward model (same shape, one score head) and pairs, all random."""
    sys.path.insert(0, str(HERE))
    from dpo_step import build_model_and_data
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    rows = size["job_batch"] * size["job_steps"]
    build_model_and_data(folder, size["model"], rows, size["max_length"], seed=0)
    policy = folder / "model"
    reward = LlamaForSequenceClassification.from_pretrained(policy, num_labels=1)
    reward.save_pretrained(folder / "reward")
    AutoTokenizer.from_pretrained(policy).save_pretrained(folder / "reward")
    return policy, folder / "reward", folder / "pairs.parquet"


def job_config(size: dict, folder: Path, zero_stage: int):
    from alignment.config import PipelineConfig

    method = {
        "per_device_train_batch_size": size["job_batch"],
        "max_steps": size["job_steps"],
        "max_length": size["max_length"],
        "save_steps": 10_000,
    }
    return PipelineConfig.model_validate(
        {
            "workspace": {"root": str(folder / "workspace")},
            "train": {
                "dpo": method,
                "ppo": {**method, "max_new_tokens": size["ppo_new_tokens"], "ppo_epochs": 1},
                "distributed": {
                    "num_processes": 1,
                    "zero_stage": zero_stage,
                    "device": size["device"],
                },
            },
        }
    )


def ppo_throughput(size: dict, folder: Path, policy: Path, reward: Path, pairs: Path) -> dict:
    from alignment.train.launch import launch_training

    cfg = job_config(size, folder, zero_stage=2)
    result = launch_training(
        "ppo", cfg, policy, pairs, folder / "ppo", reward_model_path=reward, on_progress=_quiet
    )
    steps, seconds = result.metrics["global_step"], result.metrics["train_runtime"]
    episodes = steps * cfg.train.ppo.per_device_train_batch_size * cfg.train.distributed.world_size
    return {
        "steps": steps,
        "train_seconds": seconds,
        "steps_per_s": steps / seconds,
        # each episode: one sampled response of at most max_new_tokens, scored and trained on
        "episodes_per_s": episodes / seconds,
        "max_new_tokens": cfg.train.ppo.max_new_tokens,
        "processes": cfg.train.distributed.world_size,
    }


def zero3_memory(size: dict, folder: Path, policy: Path, pairs: Path) -> dict:
    from alignment.train.launch import launch_training

    cfg = job_config(size, folder, zero_stage=3)
    result = launch_training("dpo", cfg, policy, pairs, folder / "zero3", on_progress=_quiet)
    return {
        "zero_stage": 3,
        "processes": cfg.train.distributed.world_size,
        "peak_memory_mb": result.metrics["peak_memory_mb"],
        "measure": "allocated GPU memory" if size["device"] == "cuda" else "resident set size",
        "steps": result.metrics["global_step"],
    }


def _quiet(event: dict) -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: the code paths")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json"
    )
    opts = parser.parse_args(argv)
    kind = "dry-run" if opts.dry_run else "gpu"
    size = SIZES[kind]
    if kind == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no GPU visible: run with --dry-run to check the code paths on CPU")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    report: dict = {"benchmark": "gpu_check", "dry_run": opts.dry_run}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        folder = Path(tmp)
        report["dpo_step"] = dpo_step(size, folder)
        print("dpo step: done", file=sys.stderr, flush=True)
        policy, reward, pairs = build_models(size, folder)
        report["ppo"] = ppo_throughput(size, folder, policy, reward, pairs)
        print("ppo: done", file=sys.stderr, flush=True)
        report["zero3"] = zero3_memory(size, folder, policy, pairs)
    report["wall_seconds"] = time.monotonic() - started
    mfu = report["dpo_step"]["platform"]["mfu"]
    report["mfu_target_met"] = None if mfu is None else mfu >= report["dpo_step"]["mfu_target"]
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
