"""benchmarks/oracle.py's bookkeeping: what is chosen where, and what a failed method reports."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "oracle_benchmark", ROOT / "benchmarks" / "oracle.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _test_figures(win: float, low: float, kl: float) -> dict:
    return {"win_rate_vs_sft": win, "win_rate_vs_sft_ci": [low, 1.0], "kl_to_sft": kl}


def test_a_requested_method_whose_every_run_failed_reports_false():
    bench = _benchmark()
    result = {
        "reward_model": {"accuracy_vs_oracle": 0.93},
        "chosen": {"dpo": {"run": "dpo-sigmoid-beta0.1", "test": _test_figures(0.9, 0.8, 5.0)}},
    }
    targets = bench.targets(result, ["dpo", "ppo"], 15.0)
    assert targets["dpo_test_win_rate_vs_sft_ci_low_at_least_0.75_within_kl_bound"] is True
    assert targets["ppo_test_win_rate_vs_sft_ci_low_at_least_0.75_within_kl_bound"] is False
    assert targets["reward_model_accuracy_vs_oracle_at_least_0.9"] is True
    # judged by the interval's lower end, and the KL bound, on the test split
    key = "dpo_test_win_rate_vs_sft_ci_low_at_least_0.75_within_kl_bound"
    result["chosen"]["dpo"]["test"] = _test_figures(0.9, 0.7, 5.0)
    assert bench.targets(result, ["dpo"], 15.0)[key] is False
    result["chosen"]["dpo"]["test"] = _test_figures(0.9, 0.8, 20.0)
    assert bench.targets(result, ["dpo"], 15.0)[key] is False
    # a failed reward model fails its target too
    assert bench.targets({"reward_model": None, "chosen": {}}, ["ppo"], 15.0) == {
        "ppo_trained": False,
        "reward_model_accuracy_vs_oracle_at_least_0.9": False,
        "ppo_test_win_rate_vs_sft_ci_low_at_least_0.75_within_kl_bound": False,
    }


def test_a_requested_method_without_a_target_still_reports_that_it_failed():
    bench = _benchmark()
    # every CAI run failed (e.g. a judge whose labels were all too close to 0.5 to train on)
    result = {"reward_model": {"accuracy_vs_oracle": 0.93}, "runs": [],
              "chosen": {"rloo": {"run": "rloo", "test": _test_figures(0.8, 0.7, 5.0)}}}  # fmt: skip
    targets = bench.targets(result, ["rloo", "cai"], 15.0)
    assert targets["cai_trained"] is False and targets["rloo_trained"] is True
    assert bench.chosen_for_requested({"rloo": None}, ["rloo", "cai"]) == {
        "rloo": None,
        "cai": None,
    }


def test_ipo_gets_its_own_beta_grid():
    bench = _benchmark()
    args = bench.parse_args(
        ["--loss-types", "sigmoid,ipo", "--betas", "0.1,0.3", "--ipo-betas", "1,5"]
    )
    assert bench.dpo_grid(args) == [("sigmoid", 0.1), ("sigmoid", 0.3), ("ipo", 1.0), ("ipo", 5.0)]


def test_each_group_is_chosen_on_validation():
    bench = _benchmark()

    def run(name, loss, win, kl):
        return {"name": name, "method": "dpo", "loss_type": loss,
                "validation": {"win_rate_vs_sft": win, "kl_to_sft": kl}}  # fmt: skip

    runs = [run("s1", "sigmoid", 0.8, 3.0), run("i1", "ipo", 0.9, 4.0), run("i2", "ipo", 0.95, 40)]
    groups = bench.selection_groups(runs)
    assert {k: [r["name"] for r in v] for k, v in groups.items()} == {
        "dpo": ["s1", "i1", "i2"], "dpo-sigmoid": ["s1"], "dpo-ipo": ["i1", "i2"],
    }  # fmt: skip
