"""The scale benchmarks: two-node vs one-node training, and the no-op retrain on a CPU pool.

Their verdicts are checked on made-up rows in the default suite (a loss that differs, a no-op
that trained or created a GPU-pool run must fail them); the real runs are heavy: each repeats a
path a default test drives (tests/train/test_multinode.py, tests/integration/test_work_pools.py)
and takes minutes on two cores.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"{name}_bench", ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = Path(args[args.index("--out") + 1])
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == report
    return proc, report


def _job(variant: str, losses: list[float], step_s: float, round_: int = 0) -> dict:
    return {"round": round_, "zero_stage": 2, "variant": variant, "method": "dpo",
            "losses": losses, "step_s": step_s, "wall_s": 30.0}  # fmt: skip


def test_multinode_verdict_compares_losses_step_by_step_and_steps_per_variant():
    bench = _load("multinode")
    args = SimpleNamespace(rounds=3, steps=3, zero=[2], methods=["dpo"])
    same = [0.69, 0.65, 0.60]
    rows = [_job("one_node", same, s, r) for r, s in enumerate((1.0, 2.0, 3.0))]
    rows += [_job("two_node", same, s, r) for r, s in enumerate((1.5, 2.5, 30.0))]
    report = bench.summarize(rows, args)
    assert report["jobs"]["zero2/dpo"]["two_node"]["median_step_s"] == 2.5  # a median, not a mean
    assert report["ratio_two_node_vs_one_node"] == pytest.approx(1.25)
    assert report["meets"] == {"loss_equal": True, "ratio_two_node_vs_one_node": True}

    rows[4]["losses"] = [0.69, 0.65 + 2e-5, 0.60]  # one step of one round differs
    report = bench.summarize(rows, args)
    assert report["max_loss_abs_diff"] == pytest.approx(2e-5)
    assert report["meets"]["loss_equal"] is False
    rows[4]["losses"] = same[:2]  # a job that logged fewer steps is no match either
    assert bench.summarize(rows, args)["max_loss_abs_diff"] == float("inf")


def test_noop_retrain_verdict_fails_a_run_that_trained_or_used_the_gpu_pool():
    bench = _load("noop_retrain")

    def row(variant, seconds, status="nothing-new"):
        return {"variant": variant, "status": status, "state": "COMPLETED",
                "trigger_to_done_s": seconds, "flow_run_s": seconds / 2}  # fmt: skip

    rows = [row("served", 3.0), row("pool", 4.0), row("pool", 6.0), row("served", 2.0)]
    rows += [row("served", 9.0), row("pool", 4.5)]
    report = bench.summarize(rows, ["served", "pool"], 0, "postgres")
    assert report["variants"]["pool"]["median_trigger_to_done_s"] == 4.5
    assert report["ratio_pool_vs_served_trigger_to_done"] == pytest.approx(4.5 / 3.0)
    assert report["meets"] == {
        "served_trigger_to_done_s": True,
        "pool_trigger_to_done_s": True,
        "every_run_nothing_new": True,
        "no_gpu_pool_run": True,
    }
    assert (
        bench.summarize(rows, ["served", "pool"], 1, "postgres")["meets"]["no_gpu_pool_run"]
        is False
    )
    rows[1]["status"] = "trained"
    assert (
        bench.summarize(rows, ["served", "pool"], 0, "postgres")["meets"]["every_run_nothing_new"]
        is False
    )


@pytest.mark.slow
@pytest.mark.heavy  # tests/train/test_multinode.py drives the two-node ZeRO-2 path by default
def test_multinode_smoke_runs_both_variants_with_equal_losses(tmp_path):
    _, report = _run("multinode.py", "--smoke", "--out", str(tmp_path / "multinode.json"))
    (job,) = report["jobs"]
    assert job == "zero2/dpo"
    assert {r["variant"] for r in report["rows"]} == {"one_node", "two_node"}
    assert all(len(r["losses"]) == 3 and r["step_s"] > 0 for r in report["rows"])
    assert report["max_loss_abs_diff"] <= 1e-5 and report["meets"]["loss_equal"]
    assert report["ratio_two_node_vs_one_node"] > 0
    assert set(report["meets"]) == {"loss_equal", "ratio_two_node_vs_one_node"}


@pytest.mark.slow
@pytest.mark.heavy  # PostgreSQL, a Prefect server, a training and a worker: minutes on 2 cores;
# tests/integration/test_work_pools.py drives the same pools
def test_noop_retrain_on_the_cpu_pool_creates_no_gpu_run(tmp_path):
    database = "postgres" if _load("noop_retrain").postgres_bin_dir() else "sqlite"
    _, report = _run("noop_retrain.py", "--runs", "2", "--database", database,
                     "--out", str(tmp_path / "noop.json"))  # fmt: skip
    assert report["prefect_database"] == database
    assert set(report["variants"]) == {"served", "pool"}
    assert [r["variant"] for r in report["rows"]] == ["served", "pool", "pool", "served"]
    assert all(v["runs"] == 2 for v in report["variants"].values())
    assert report["statuses"] == ["nothing-new"] and report["gpu_pool_runs"] == 0
    assert report["meets"]["every_run_nothing_new"] and report["meets"]["no_gpu_pool_run"]
    assert set(report["meets"]) == {
        "served_trigger_to_done_s",
        "pool_trigger_to_done_s",
        "every_run_nothing_new",
        "no_gpu_pool_run",
    }
