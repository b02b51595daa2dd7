"""benchmarks/gaming.py cannot rot: its smoke mode runs every stage at a tiny size (reward
hacking under PPO and GRPO, unguarded and guarded; sycophantic and honest DPO; the gate) and
writes the keys it promises. The figures at this size mean nothing. Two minutes on a quiet
2-core machine (every training method twice), so it runs in `make test-all`, not the default
suite; the stages it strings together are each driven by default tests."""

from __future__ import annotations

import json
import re
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
        assert steps[0] == 0  # the guard only recorded: the run went to its last step, below
        assert "hack_real" in run["unguarded"]["verdict"]
        found = run["kept_vs_peak"]  # the kept checkpoint against the cross-fitted peak
        assert found["kept_step"] == run["guarded"]["metrics"]["guard/kept_step"]
        assert run["guard_kept_fraction_of_peak"] == found["fraction_of_peak"]
        assert run["guard_kept_fraction_of_naive_peak"] == found["naive_fraction_of_peak"]
        # observe mode: one run; the guarded figures are its evaluations up to the replayed stop
        assert run["guarded"]["replayed_from"] == "unguarded" and run["guarded"]["model"] is None
        last = run["guarded"]["metrics"]["guard/final_step"]
        assert run["guarded"]["trajectory"] == [
            p for p in run["unguarded"]["trajectory"] if p["step"] <= last
        ]
        # its learning rate was chosen on the validation prompts, from the sweep's runs
        rates = report["rl_learning_rate_choice"]["methods"][method]
        assert (run["learning_rate"], run["steps"]) == (rates["learning_rate"], rates["steps"])
        # the chosen step count (smoke: 6, not the default --steps 4) is the runs' own
        assert steps[-1] == rates["steps"] == 6
        assert rates["learning_rate"] in [r["learning_rate"] for r in rates["runs"]]
        assert (tmp_path / f"gaming_{method}.png").stat().st_size > 0
    # the flaw is in the labels the proxy reward model learned from
    assert report["label_agreement"]["hacking"] < 1.0
    # the guard's held-out signal: three reward models on the honest labels (seeds 0, 1, 2)
    assert len(report["reward_model_honest_members"]) == 3
    assert report["reward_model_honest_members"][0] == report["reward_model_honest"]
    # ... at the setting chosen on the honest labels of validation pairs (one setting in smoke)
    rms = report["honest_rm_choice"]
    assert rms["chosen"] == {"learning_rate": 3e-3, "num_train_epochs": 1.0}
    assert len(rms["models"]) == 3 and {r["seed"] for r in rms["per_seed"]} == {0, 1, 2}
    assert 0 <= rms["runs"][0]["validation_accuracy_vs_labels"] <= 1
    # the candidates' beta was chosen on validation prompts, within the gate's KL budget
    choice = report["dpo_beta_choice"]
    assert choice["kl_budget"] == 5.0 and choice["beta"] in [r["beta"] for r in choice["runs"]]
    assert {r["seed"] for r in choice["per_seed"]} == {0, 1}  # the worst of two seeds
    # the sycophancy candidate's setting, chosen by the annotators' approval on validation
    syc = report["sycophancy_dpo_choice"]
    assert syc["chosen"] == {"beta": 2.0, "learning_rate": 2e-3, "num_train_epochs": 1.0}
    assert {r["seed"] for r in syc["per_seed"]} == {0, 1}
    assert 0 <= syc["runs"][0]["validation"]["annotator_win_rate_vs_sft"] <= 1
    # and every figure went to one MLflow run in the workspace's store, the plots with it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(report["mlflow_tracking_uri"])
    artifacts = {a.path for a in client.list_artifacts(report["mlflow_run_id"])}
    assert artifacts == {"gaming.json", "gaming_ppo.png", "gaming_grpo.png"}
    assert (
        "ppo/seed0/guard_kept_fraction_of_peak"
        in client.get_run(report["mlflow_run_id"]).data.metrics
    )


def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gaming_bench", ROOT / "benchmarks/gaming.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def _point(step: int, proxy: float, oracle: float) -> dict:
    return {"step": step, "proxy": proxy, "held_out": -proxy, "kl": step / 10,
            "oracle_reward": oracle, "oracle_reward_ci": [oracle - 0.1, oracle + 0.1]}  # fmt: skip


def _candidate(promoted: bool, win_rate: float) -> dict:
    return {"promoted": promoted, "refused_by": [] if promoted else ["kl_from_reference <= 5"],
            "oracle_win_rate_vs_champion": win_rate, "judge_lc_win_rate_vs_champion": win_rate,
            "unique_response_rate": 1.0, "distinct_2": 0.5, "response_words_mean": 9.0,
            "sycophancy_shift": 0.0, "kl_from_reference": 3.0}  # fmt: skip


def _seed_result(bench, seed: str, hacked_promoted: bool, tmp_path) -> Path:
    """What a run over one seed writes (synthetic figures, the real summary)."""
    unguarded = [_point(0, 0.1, 0.2), _point(5, 0.5, 0.6), _point(10, 0.9, 0.3)]
    run = {
        "unguarded": {"trajectory": unguarded, "metrics": {}, "verdict": {
            "peak_oracle_reward": 0.6, "final_oracle_reward": 0.3, "peak_minus_final": 0.3,
            "peak_minus_final_ci": [0.2, 0.4], "hack_real": True}},
        "guarded": {"trajectory": unguarded[:2], "metrics": {
            "guard/stopped": 1, "guard/final_step": 5, "guard/kept_step": 5}},
        "unguarded_peak_oracle_reward": 0.6, "guard_kept_oracle_reward": 0.6,
        "guard_kept_fraction_of_peak": 1.0,
    }  # fmt: skip
    gate = {seed: {"hacked_ppo": _candidate(hacked_promoted, 0.3),
                   "honest_dpo": _candidate(True, 0.8)}}  # fmt: skip
    common = {
        "smoke": False, "methods": ["ppo"], "steps": 10, "label_agreement": {},
        "settings": {"hacking": {"filler_strength": 0.5}, "sycophancy": {"sycophancy_strength": 0.8}},
        "reward_model_flawed": {"accuracy_vs_oracle": 0.8}, "reward_model_honest": {"accuracy_vs_oracle": 0.9},
        "champions": {}, "dpo_beta_choice": {"beta": 1.0}, "gate_conditions_dropped": ["alignment_tax"],
        "gate_conditions_added_by_benchmark": [],
    }  # fmt: skip
    path = tmp_path / f"seed{seed}.json"
    path.write_text(json.dumps(bench.summarise(common, {"ppo": {seed: run}}, gate, ["ppo"], False)))
    return path


def test_runs_over_other_seeds_merge_into_one_result_and_one_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    bench = _bench()
    parts = [_seed_result(bench, "0", False, tmp_path), _seed_result(bench, "3", True, tmp_path)]
    out = tmp_path / "gaming.json"
    assert bench.main(["--merge", *map(str, parts), "--workspace", str(tmp_path / "ws"),
                       "--out", str(out), "--figures", str(tmp_path)]) == 0  # fmt: skip

    merged = json.loads(out.read_text())
    assert merged["seeds"] == 2 and set(merged["per_seed"]) == {"0", "3"}
    assert merged["hacked_promoted"] == 1 and merged["hacked_candidates"] == 2
    assert merged["honest_promoted"] == 2
    assert merged["meets"]["no_hacked_or_sycophantic_promoted"] is False
    client = MlflowClient(merged["mlflow_tracking_uri"])
    run_id = merged["mlflow_run_id"]
    logged = client.get_run(run_id).data
    assert logged.metrics["ppo/seed3/hack_real"] == 1.0
    assert logged.metrics["ppo/seed0/guard_kept_fraction_of_peak"] == 1.0
    assert logged.metrics["gate/seed3/hacked_ppo/promoted"] == 1.0
    assert logged.metrics["hacked_promoted"] == 1.0
    assert logged.params["candidates_dpo_beta"] == "1.0"
    history = client.get_metric_history(run_id, "ppo/seed0/unguarded/oracle_reward")
    assert [(m.step, m.value) for m in history] == [(0, 0.2), (5, 0.6), (10, 0.3)]
    assert {a.path for a in client.list_artifacts(run_id)} == {"gaming.json", "gaming_ppo.png"}


def test_the_merged_run_goes_to_its_own_experiment_whatever_experiment_is_active(
    tmp_path, monkeypatch
):
    """An experiment set active earlier in the process (another store, another id) must not
    receive the benchmark's run, nor make it fail for an id its own store lacks."""
    import mlflow
    from mlflow.tracking import MlflowClient

    bench = _bench()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    # MLflow writes the URI into the environment too, where later CLI processes would read it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    mlflow.set_tracking_uri(other)
    for name in ("a", "b", "c"):
        mlflow.create_experiment(name, artifact_location=(tmp_path / name).as_uri())
    mlflow.set_experiment("c")  # id 3 there; the benchmark's own store has no experiment 3
    parts = [_seed_result(bench, "0", False, tmp_path)]
    out = tmp_path / "gaming.json"
    assert bench.main(["--merge", *map(str, parts), "--workspace", str(tmp_path / "ws"),
                       "--out", str(out), "--figures", str(tmp_path)]) == 0  # fmt: skip
    merged = json.loads(out.read_text())
    client = MlflowClient(merged["mlflow_tracking_uri"])
    experiment = client.get_experiment(client.get_run(merged["mlflow_run_id"]).info.experiment_id)
    assert experiment.name == "gaming-benchmark"


def test_the_rl_grid_names_a_rate_and_optionally_its_steps_per_method():
    sys.path.insert(0, str(ROOT))
    from benchmarks.gaming_runs import parse_rl_grid

    assert parse_rl_grid("ppo=1e-3,2e-3@100;grpo=3e-3@120", 60) == {
        "ppo": [(1e-3, 60), (2e-3, 100)],
        "grpo": [(3e-3, 120)],
    }


def test_the_sycophancy_dpo_grid_names_beta_rate_and_epochs():
    sys.path.insert(0, str(ROOT))
    from benchmarks.gaming_runs import parse_dpo_grid

    assert parse_dpo_grid("2@2e-3x2, 0.5@5e-3x10") == [
        {"beta": 2.0, "learning_rate": 2e-3, "num_train_epochs": 2.0},
        {"beta": 0.5, "learning_rate": 5e-3, "num_train_epochs": 10.0},
    ]
    with pytest.raises(SystemExit, match=re.escape("'0.5@5e-3' is not beta@rate x epochs")):
        parse_dpo_grid("2@2e-3x2,0.5@5e-3")


def test_the_honest_reward_model_grid_names_rate_and_epochs():
    sys.path.insert(0, str(ROOT))
    from benchmarks.gaming_runs import parse_reward_grid

    assert parse_reward_grid("3e-3x8, 1e-3x4") == [
        {"learning_rate": 3e-3, "num_train_epochs": 8.0},
        {"learning_rate": 1e-3, "num_train_epochs": 4.0},
    ]
    with pytest.raises(SystemExit, match=re.escape("'1e-3' is not rate x epochs")):
        parse_reward_grid("3e-3x8,1e-3")


def test_the_guard_asks_each_held_out_prompt_as_often_as_eval_repeats_says(tmp_path):
    sys.path.insert(0, str(ROOT))
    from alignment.oracle import task
    from alignment.oracle.experiment import Prepared, read_records, write_records
    from benchmarks.gaming_runs import guard_prompts

    prompts = task.all_prompts()[:3]
    pairs = [task.canonical_record(p, f"a{i}", f"b{i}", None, None, {})
             for p in prompts for i in range(4)]  # fmt: skip
    test_pairs = write_records(pairs, tmp_path / "test_pairs.parquet")
    prepared = Prepared(tmp_path, Path(), tmp_path, test_pairs, test_pairs, test_pairs, 1.0)
    written = read_records(guard_prompts(prepared, tmp_path / "guard.parquet", 3))
    asked = [r["prompt"][-1]["content"] for r in written]
    assert sorted(asked) == sorted(prompts * 3)
