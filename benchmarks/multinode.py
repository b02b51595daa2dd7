"""Two-node vs one-node DeepSpeed training: step time and loss equality, on one machine.

The same job (world size 2: the tiny Llama, SFT then DPO from the SFT model, ZeRO-2 and ZeRO-3)
runs two ways, as tests/train/test_multinode.py runs it:

- one_node: one `alignment train` command, one torchrun agent, two processes;
- two_node: two `alignment train --node-rank 0/1` commands, one agent each, one process each,
  meeting at a static rendezvous on 127.0.0.1 and sharing the job folder as nodes share a
  filesystem.

The variants alternate within every round (the first one alternates between rounds). Step time
is read from node 0's progress lines: the time from the first logged step to the last over the
steps between (the first step, which carries warm-up, is left out); the job's wall time (start
of the commands to their exit: imports, rendezvous, DeepSpeed set-up, saving) is beside it.

On one machine this measures the launch's own overhead, not a network: both variants move
gradients with gloo over TCP on loopback (DeepSpeed's shared-memory op is off), so the two-node
figure adds a second agent, the cross-agent rendezvous and its TCP store, and nothing of a real
interconnect. Equal steps are expected: the target is a two-node step time within 1.25 times
the one-node one, and equal losses, step by step, to 1e-5 (same config, seed and global ranks).

    python benchmarks/multinode.py                 # 3 rounds, ZeRO-2 and ZeRO-3, SFT then DPO
    python benchmarks/multinode.py --smoke         # 1 round, ZeRO-2, DPO, 3 steps: a check

The full run is 24 jobs (3 rounds x 2 stages x 2 variants x SFT, DPO) of about half a minute
each on two quiet cores, most of it start-up: about 10-15 minutes; the smoke run about 1-2.

Prints a table; writes benchmarks/results/multinode.json and prints it as the last line. Exits 1
if a loss differs by more than 1e-5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' preference task and job config: the same job

VARIANTS = {"one_node": 1, "two_node": 2}  # nodes; world size 2 either way
LOSS_TOLERANCE = 1e-5
RATIO_TARGET = 1.25
PROGRESS = "@@progress "


def run_job(method: str, config: Path, nodes: int, model: Path, data: Path, out: Path) -> dict:
    """One job, its nodes started together; returns its losses, step time and wall time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    procs, consoles = [], []
    start = time.perf_counter()
    for rank in range(nodes):
        console = out.parent / f"{out.name}-node{rank}.txt"
        consoles.append(console)
        command = [
            sys.executable, "-m", "alignment", "train", method, "--config", str(config),
            "--node-rank", str(rank), "--model", str(model), "--train-data", str(data),
            "--output", str(out),
        ]  # fmt: skip
        with console.open("w") as log:
            procs.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
    try:
        codes = [p.wait(timeout=1800) for p in procs]
    finally:
        for p in procs:
            _kill_tree(p)
    wall = time.perf_counter() - start
    if any(codes):
        tails = "\n".join(f"{c.name}:\n{c.read_text()[-2000:]}" for c in consoles)
        raise SystemExit(f"{method} job with {nodes} node(s) failed {codes}:\n{tails}")
    if nodes > 1:  # node 1 ran its own agent as node 1 of 2, or this was no two-node job
        node1 = (out / "train-node1.log").read_text(errors="replace")
        if f"--nnodes {nodes} --node_rank 1 --nproc_per_node 1" not in node1:
            raise SystemExit(f"node 1 did not run as node 1 of {nodes}: see {out}")
    history = json.loads((out / "history.json").read_text())
    events = [
        json.loads(line[len(PROGRESS) :])
        for line in (out / "train.log").read_text(errors="replace").splitlines()
        if line.startswith(PROGRESS)
    ]
    seconds = [e["train_seconds"] for e in events]
    return {
        "losses": [h["loss"] for h in history if "loss" in h],
        # first logged step to last: the steps after the first (warm-up) one
        "step_s": (seconds[-1] - seconds[0]) / (len(seconds) - 1),
        "wall_s": wall,
    }


def _kill_tree(proc: subprocess.Popen) -> None:
    """A node's CLI, its torchrun agent (a session of its own) and its workers, if still there."""
    import psutil

    if proc.poll() is not None:
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in [*psutil.Process(proc.pid).children(recursive=True), proc]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    proc.wait()


def measure(model: Path, data: Path, work: Path, args) -> list[dict]:
    """Every round: per ZeRO stage, both variants in alternating order, each SFT then DPO."""
    from multinode_job import job_config

    rows = []
    for round_ in range(args.rounds):
        order = list(VARIANTS) if round_ % 2 == 0 else list(VARIANTS)[::-1]
        for zero in args.zero:
            for variant in order:
                nodes = VARIANTS[variant]
                folder = work / f"r{round_}" / f"zero{zero}" / variant
                # no checkpoint inside the timing
                config = job_config(folder, nodes, zero, args.steps, save_steps=args.steps + 100)
                start = model
                for method in args.methods:
                    out = folder / method
                    job = run_job(method, config, nodes, start, data, out)
                    start = out / "model"
                    rows.append(
                        {"round": round_, "zero_stage": zero, "variant": variant,
                         "method": method, **job}
                    )  # fmt: skip
                    print(
                        f"round {round_} zero{zero} {variant:>8} {method}: step "
                        f"{job['step_s']:.3f} s, job {job['wall_s']:.1f} s",
                        file=sys.stderr,
                    )
                shutil.rmtree(folder / "ws", ignore_errors=True)
    return rows


def summarize(rows: list[dict], args) -> dict:
    """Medians over rounds per (ZeRO stage, method, variant), ratios, loss differences."""
    jobs, ratios, loss_diff = {}, {}, {}
    for zero in args.zero:
        for method in args.methods:
            key = f"zero{zero}/{method}"
            mine = {
                v: [
                    r
                    for r in rows
                    if (r["zero_stage"], r["method"], r["variant"]) == (zero, method, v)
                ]
                for v in VARIANTS
            }
            jobs[key] = {
                v: {
                    "median_step_s": statistics.median(r["step_s"] for r in runs),
                    "median_job_wall_s": statistics.median(r["wall_s"] for r in runs),
                    "step_s_per_round": [r["step_s"] for r in runs],
                }
                for v, runs in mine.items()
            }
            ratios[key] = (
                jobs[key]["two_node"]["median_step_s"] / jobs[key]["one_node"]["median_step_s"]
            )
            # the same round's two jobs, step by step
            diffs = []
            for one, two in zip(mine["one_node"], mine["two_node"], strict=True):
                if len(one["losses"]) != len(two["losses"]):
                    diffs.append(math.inf)
                    continue
                diffs += [abs(a - b) for a, b in zip(one["losses"], two["losses"], strict=True)]
            loss_diff[key] = max(diffs)
    # one figure over every (stage, method): the geometric mean of their median ratios
    ratio = math.exp(statistics.fmean(math.log(r) for r in ratios.values()))
    max_diff = max(loss_diff.values())
    return {
        "benchmark": "multinode",
        "rounds": args.rounds,
        "steps": args.steps,
        "zero_stages": args.zero,
        "methods": args.methods,
        "world_size": 2,
        "variants": {v: f"{n} node(s) x {2 // n} process(es)" for v, n in VARIANTS.items()},
        "jobs": jobs,
        "median_step_s": {
            v: statistics.median(r["step_s"] for r in rows if r["variant"] == v) for v in VARIANTS
        },
        "ratio_two_node_vs_one_node": ratio,
        "ratio_two_node_vs_one_node_by_job": ratios,
        "max_loss_abs_diff": max_diff,
        "max_loss_abs_diff_by_job": loss_diff,
        "loss_tolerance": LOSS_TOLERANCE,
        "ratio_target": RATIO_TARGET,
        "meets": {
            "loss_equal": max_diff <= LOSS_TOLERANCE,
            "ratio_two_node_vs_one_node": ratio <= RATIO_TARGET,
        },
        "rows": rows,
    }


def _print_table(result: dict) -> None:
    print(
        f"{'job':<12} {'variant':>9} {'step s':>8} {'job s':>7} {'ratio 2n/1n':>12} {'max |dloss|':>12}"
    )
    for key, figures in result["jobs"].items():
        for v in VARIANTS:
            ratio = result["ratio_two_node_vs_one_node_by_job"][key] if v == "two_node" else None
            diff = result["max_loss_abs_diff_by_job"][key] if v == "two_node" else None
            print(
                f"{key:<12} {v:>9} {figures[v]['median_step_s']:>8.3f} "
                f"{figures[v]['median_job_wall_s']:>7.1f} "
                f"{'' if ratio is None else f'{ratio:.3f}':>12} "
                f"{'' if diff is None else f'{diff:.2e}':>12}"
            )
    print(
        f"ratio two-node vs one-node (geometric mean): {result['ratio_two_node_vs_one_node']:.3f}; "
        f"max loss difference {result['max_loss_abs_diff']:.2e}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per job")
    parser.add_argument("--zero", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--methods", nargs="+", default=["sft", "dpo"], choices=["sft", "dpo"])
    parser.add_argument("--smoke", action="store_true", help="1 round, ZeRO-2, DPO, 3 steps")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "multinode.json"
    )
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.steps, args.zero, args.methods = 1, 3, [2], ["dpo"]
    if args.steps < 3:
        parser.error("--steps: at least 3 (the first step is warm-up; a step time needs two more)")

    from preference_task import preference_rows, write_rows

    from alignment.config import ModelConfig
    from alignment.models import resolve_base_model
    from alignment.workspace import Workspace

    work = Path(tempfile.mkdtemp(prefix="multinode-bench-"))
    try:
        corpus = [
            f"What is {a} plus {b}? {a} plus {b} is {a + b}." for a in range(10) for b in range(10)
        ]
        model = resolve_base_model(
            ModelConfig(), Workspace(work / "model-ws"), [*corpus, "I refuse to answer."]
        )
        data = write_rows(work / "train.parquet", preference_rows())
        rows = measure(model, data, work, args)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)

    result = summarize(rows, args)
    _print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    if not result["meets"]["loss_equal"]:
        print(f"error: losses differ by {result['max_loss_abs_diff']:.2e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
