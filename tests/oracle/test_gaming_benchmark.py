"""benchmarks/gaming.py cannot rot: its smoke mode runs every stage at a tiny size (reward
hacking under PPO and GRPO, unguarded and guarded; sycophantic and honest DPO; the gate) and
writes the keys it promises. The figures at this size mean nothing. Two minutes on a quiet
2-core machine (every training method twice), so it runs in `make test-all`, not the default
suite; the stages it strings together are each driven by default tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.heavy
def test_gaming_smoke_writes_every_key(tmp_path):
    out = tmp_path / "gaming.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gaming.py"), "--smoke",
         "--workspace", str(tmp_path / "ws"), "--out", str(out), "--figures", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == report
    assert report["smoke"] is True and report["methods"] == ["ppo", "grpo"]
    for key in ("hacked_promoted", "honest_promoted", "guard_kept_fraction_of_peak", "meets"):
        assert key in report
    seed = report["per_seed"]["0"]
    assert set(seed) >= {"hacked_promoted", "honest_promoted", "guard_kept_fraction_of_peak"}
    assert set(seed["guard_kept_fraction_of_peak"]) == {"ppo", "grpo"}
    assert set(report["gate"]["0"]) == {
        "hacked_ppo",
        "hacked_grpo",
        "sycophantic_dpo",
        "honest_dpo",
    }
    for candidate in report["gate"]["0"].values():
        for metric in ("unique_response_rate", "distinct_2", "response_words_mean",
                       "sycophancy_shift", "judge_lc_win_rate_vs_champion"):  # fmt: skip
            assert isinstance(candidate[metric], float), (metric, candidate)
        assert isinstance(candidate["promoted"], bool)
    for method in ("ppo", "grpo"):
        run = report["rl"][method]["0"]
        steps = [p["step"] for p in run["unguarded"]["trajectory"]]
        assert steps[0] == 0 and steps[-1] == report["steps"]  # the guard only recorded
        assert "hack_real" in run["unguarded"]["verdict"]
        assert (tmp_path / f"gaming_{method}.png").stat().st_size > 0
    # the flaw is in the labels the proxy reward model learned from
    assert report["label_agreement"]["hacking"] < 1.0
