"""`benchmarks/gpu_check.sh --dry-run`: the GPU check's code paths on CPU at toy size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_part_and_writes_one_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--output", str(out)],
        cwd=tmp_path,  # the script finds the repository by itself
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == report
    assert report["dry_run"] is True

    dpo = report["dpo_step"]
    assert (dpo["model"], dpo["max_length"]) == ("toy", 48)
    for variant in ("trl_best", "platform", "floor"):
        assert dpo[variant]["tokens_per_s"] > 0 and dpo[variant]["peak_memory_mb"] > 0
        assert dpo[variant]["mfu"] is None  # MFU is a GPU figure: no bf16 peak on a CPU
    assert dpo["ratio_vs_floor"] == pytest.approx(
        dpo["platform"]["s_per_step"] / dpo["floor"]["s_per_step"]
    )
    assert report["mfu_target_met"] is None

    ppo = report["ppo"]
    assert ppo["steps"] == 2 and ppo["processes"] == 1
    assert ppo["episodes_per_s"] == pytest.approx(ppo["steps"] * 2 / ppo["train_seconds"])

    zero3 = report["zero3"]
    assert zero3["zero_stage"] == 3 and zero3["steps"] == 2
    assert zero3["peak_memory_mb"] > 100  # a whole training process's resident set on CPU
    assert zero3["measure"] == "resident set size"
