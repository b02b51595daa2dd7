"""Benchmarks cannot rot: each script runs here at a tiny size and writes the keys it promises.

The figures at this size mean nothing; what is checked is that every code path still runs,
every variant is measured, and the JSON carries its ratios, targets and verdicts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_dpo_step_measures_every_variant_against_the_floor_and_trl(tmp_path):
    out = tmp_path / "dpo_step.json"
    proc = _run("dpo_step.py", "--smoke", "--output", str(out))
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == report
    assert set(report["variants"]) == {"a", "a2", "a3", "b", "c"}
    assert report["variants"]["a3"]["gradient_checkpointing"] is False
    assert report["variants"]["a"]["gradient_checkpointing"] is True
    for key in ("ratio_vs_floor", "ratio_vs_trl_default", "ratio_vs_trl_best"):
        assert report[key] > 0
    assert set(report["meets"]) >= {"ratio_vs_floor", "ratio_vs_trl_best", "loss_equal_to_trl"}
    # the same updates from the same start: the platform and the floor reproduce TRL's losses
    assert report["loss_max_abs_diff_vs_trl_default"]["b"] <= 1e-5
    assert report["loss_max_abs_diff_vs_trl_default"]["c"] <= 1e-4


def test_ai_feedback_compares_the_judge_with_its_floor_and_two_generating_judges(tmp_path):
    out = tmp_path / "ai_feedback.json"
    _run("ai_feedback.py", "--pairs", "4", "--batch-size", "4", "--max-new-tokens", "8",
         "--out", str(out))  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report["seconds"]) == {"one_pass", "floor", "direct", "reasoning"}
    for key in ("ratio_vs_floor", "speedup_vs_direct_judge", "speedup_vs_reasoning_judge"):
        assert report[key] > 0
    assert set(report["parse_failure_rate"]) == {"one_pass", "direct", "reasoning"}
    assert report["parse_failure_rate"]["one_pass"] == 0
    assert set(report["meets"]) == {"ratio_vs_floor", "speedup_vs_direct_judge", "parse_failures"}


def test_validate_times_ingest_against_its_floor(tmp_path):
    out = tmp_path / "validate.json"
    _run("validate.py", "--rows", "400", "--floor-repeats", "1", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report["variants"]) >= {"floor", "ingest"}
    assert report["variants"]["ingest"]["ratio_vs_floor"] > 0
    assert set(report["meets"]) == {"seconds_1m", "peak_mb", "ratio_vs_floor"}
