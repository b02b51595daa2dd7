"""Benchmarks cannot rot: each script runs here at a tiny size and writes the keys it promises.

The figures at this size mean nothing; what is checked is that every code path still runs,
every variant is measured, and the JSON carries its ratios, targets and verdicts.
"""

from __future__ import annotations

import importlib.util
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
    assert report["loss_max_abs_diff_vs_trl_default"]["c"] <= 1e-5


def test_ai_feedback_compares_the_judge_with_its_floor_and_two_generating_judges(tmp_path):
    out = tmp_path / "ai_feedback.json"
    _run("ai_feedback.py", "--pairs", "4", "--batch-size", "4", "--max-new-tokens", "8",
         "--reasoning-pairs", "2", "--rounds", "2", "--out", str(out))  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report["seconds"]) == {
        "one_pass", "floor", "full_context_floor", "direct", "reasoning"
    }  # fmt: skip
    assert all(len(report["seconds_per_round"][k]) == 2 for k in report["seconds"])
    for key in ("ratio_vs_floor", "speedup_vs_direct_judge", "speedup_vs_reasoning_judge"):
        assert report[key] > 0
    assert report["direct_vs_floor"] == pytest.approx(
        report["seconds"]["direct"] / report["seconds"]["floor"]
    )
    assert report["direct_vs_full_context_floor"] == pytest.approx(
        report["seconds"]["direct"] / report["seconds"]["full_context_floor"]
    )
    # the reasoning judge is timed on its own subset, and compared per pair
    assert report["reasoning_pairs"] == 2
    assert report["pairs_per_s"]["reasoning"] == pytest.approx(2 / report["seconds"]["reasoning"])
    tokens = report["tokens"]
    assert 0 < tokens["forwarded_floor"] < tokens["forwarded_full_context_floor"]
    assert report["max_abs_p_a_difference_vs_full_context"] < 1e-4
    assert set(report["parse_failure_rate"]) == {"one_pass", "direct", "reasoning"}
    assert report["parse_failure_rate"]["one_pass"] == 0
    assert set(report["meets"]) == {"ratio_vs_floor", "speedup_vs_direct_judge", "parse_failures"}


def test_validate_times_ingest_against_a_floor_that_does_the_same_checks(tmp_path):
    out = tmp_path / "validate.json"
    # 1,000 rows hold 20 bad ones: every kind of defect the input is made with at least once
    _run("validate.py", "--rows", "1000", "--floor-repeats", "1", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report["variants"]) >= {"floor", "ingest"}
    assert report["variants"]["ingest"]["ratio_vs_floor"] > 0
    assert set(report["meets"]) == {"seconds_1m", "peak_mb", "ratio_vs_floor"}
    assert report["same_checks"] is True
    floor, ingest = report["variants"]["floor"], report["variants"]["ingest"]
    for key in ("accepted", "rejected", "rule_failures", "malformed"):
        assert floor[key] == ingest[key], key
    # every rule that needs no tokenizer, and every kind of malformed line, was hit
    rules = set(ingest["rule_failures"])
    assert rules == {*report["input_mix"]["bad_kinds"][:11], "duplicate", "near_duplicate"}
    assert set(ingest["malformed"]) == set(report["input_mix"]["bad_kinds"][11:])
    assert ingest["rule_failures"]["duplicate"] == 10
    assert ingest["rule_failures"]["near_duplicate"] == 5


def test_validate_refuses_a_floor_that_counts_differently(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when run as a script
    spec = importlib.util.spec_from_file_location("validate_bench", ROOT / "benchmarks/validate.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ingest = {"accepted": 9, "rejected": 2, "rule_failures": {"duplicate": 1}, "malformed": {}}
    bench.check_same_counts(ingest, dict(ingest))
    skipped_a_rule = {**ingest, "accepted": 10, "rejected": 1, "rule_failures": {}}
    with pytest.raises(SystemExit, match="rule_failures"):
        bench.check_same_counts(skipped_a_rule, ingest)


def test_label_noise_measures_both_flip_kinds_against_a_random_flagger(tmp_path):
    out = tmp_path / "label_noise.json"
    proc = _run("label_noise.py", "--pairs", "120", "--seeds", "2", "--shares", "0.1",
                "--out", str(out))  # fmt: skip
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == report
    assert set(report["results"]) == {"oracle", "words"}
    assert set(report["results"]["oracle"]) == {"random/0.1", "hard/0.1"}
    for row in (*report["results"]["oracle"].values(), report["results"]["words"]["random/0.1"]):
        assert len(row["runs"]) == 2 and row["precision_vs_random_flagger"] is not None
        assert all(r["planted"] == 12 for r in row["runs"])
    # hard flips sit on pairs the oracle barely orders; random ones anywhere
    oracle = report["results"]["oracle"]
    assert (
        oracle["hard/0.1"]["flipped_margin_median"] < oracle["random/0.1"]["flipped_margin_median"]
    )
    assert set(report["meets"]) == {"precision", "recall"}


def test_serve_load_counts_every_trace_and_feedback_and_compares_with_the_bare_pyfunc(tmp_path):
    out = tmp_path / "serve_load.json"
    proc = _run("serve_load.py", "--smoke", "--clients", "4", "--output", str(out))
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == report
    assert len(report["rounds"]) == 2 and all(r["endpoint_requests"] for r in report["rounds"])
    assert report["p50_ratio_vs_bare_pyfunc"] > 0 and report["bare_pyfunc_p95_ms"] > 0
    assert set(report["meets"]) == {"p50_ratio_vs_bare_pyfunc", "no_trace_lost", "no_feedback_lost"}
    # whatever the speed, nothing may be lost: counted back from the store
    assert report["responses"] > 0 and report["traces_lost"] == 0 and report["feedback_lost"] == 0
    assert report["meets"]["no_trace_lost"] and report["meets"]["no_feedback_lost"]
    assert report["server_counts"]["requests"] == report["responses"]
    # like with like: the same torch settings (checked against the server's /health) and the
    # same generation, its size given for both sides
    assert report["runtime"]["omp_wait_policy"] and report["runtime"]["torch_threads"] >= 1
    assert 1 <= report["tokens_per_request_endpoint"] <= 8
    assert 1 <= report["tokens_per_request_bare_pyfunc"] <= 8
