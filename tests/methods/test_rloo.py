"""RLOO and GRPO from TRL against the learned reward model, with the over-optimisation guard:
short 2-process ZeRO-2 jobs."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    # GRPO shares RLOO's code path here (methods/rloo.py); its own run is in `make test-all`
    ["rloo", pytest.param("grpo", marks=pytest.mark.heavy)],
)
def test_online_job_against_the_reward_model_saves_a_loadable_policy(
    method, tiny_model_dir, preference_parquet, reward_run, rl_config, tmp_path
):
    import torch
    from transformers import AutoModelForCausalLM

    from alignment.train.launch import launch_training

    # a step: 4 completions on each of 2 processes = 2 prompts x 4 samples; the guard records
    # (stop: false) every 2 steps, watching a reward model as if trained on held-out labels
    guard = {"enabled": True, "eval_steps": 2, "eval_prompts": 8, "stop": False,
             "signal": "held_out_reward_model", "held_out_reward_model": str(reward_run.output_dir)}  # fmt: skip
    cfg = rl_config(
        **{
            method: {
                "max_steps": 3,
                "per_device_train_batch_size": 4,
                "num_generations": 4,
                "max_completion_length": 6,
                "learning_rate": 1e-3,
                "lr_scheduler_type": "constant",  # the transformers default decays it to 0
                "guard": guard,
            }
        }
    )
    events = []
    result = launch_training(
        method,
        cfg,
        tiny_model_dir,
        preference_parquet,
        tmp_path / method,
        reward_model_path=reward_run.output_dir,
        on_progress=events.append,
    )
    assert result.metrics["global_step"] == 3
    steps = [h for h in result.history if "reward" in h]
    assert len(steps) == 3, result.history
    assert [h["learning_rate"] for h in steps] == [1e-3] * 3  # held, as configured
    # the guard evaluated the starting policy, every 2 steps and the last, like PPO's
    report = json.loads((tmp_path / method / "guard.json").read_text())
    evaluated = [r["step"] for r in report["evaluations"]]
    assert evaluated == [0, 2, 3]
    first = report["evaluations"][0]
    assert first["guard/kl"] == 0.0  # the starting policy is its own reference
    for record in report["evaluations"]:
        assert record["guard/held_out"] == record["guard/held_out_reward"]
        assert record["guard/response_length"] > 0
    best = max(report["evaluations"], key=lambda r: r["guard/held_out"])
    assert result.metrics["guard/kept_step"] == best["step"]
    assert result.metrics["guard/stopped"] == 0
    assert (tmp_path / method / "guard.png").stat().st_size > 0
    streamed = {e["step"] for e in events if "guard/held_out" in e.get("logs", {})}
    assert streamed == set(evaluated)
    assert {h["step"] for h in result.history if "guard/held_out" in h} == set(evaluated)
    policy = AutoModelForCausalLM.from_pretrained(result.output_dir)
    assert policy.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=3).shape[1] > 3


@pytest.mark.heavy
def test_guarded_grpo_stops_at_its_kl_budget_and_keeps_the_starting_policy(
    tiny_model_dir, preference_parquet, reward_run, rl_config, tmp_path
):
    from safetensors.torch import load_file

    from alignment.train.launch import launch_training

    guard = {"enabled": True, "eval_steps": 1, "eval_prompts": 8, "kl_budget": 1e-6,
             "signal": "held_out_reward_model", "held_out_reward_model": str(reward_run.output_dir)}  # fmt: skip
    cfg = rl_config(
        grpo={
            "max_steps": 6, "per_device_train_batch_size": 4, "num_generations": 4,
            "max_completion_length": 6, "learning_rate": 1e-2, "guard": guard,
        }
    )  # fmt: skip
    result = launch_training(
        "grpo", cfg, tiny_model_dir, preference_parquet, tmp_path / "grpo",
        reward_model_path=reward_run.output_dir, on_progress=lambda event: None,
    )  # fmt: skip
    metrics = result.metrics
    assert metrics["guard/stopped"] == 1 and metrics["guard/stop_reason"] == "kl_budget"
    assert metrics["global_step"] < 6  # the trainer stopped at the rule, not at max_steps
    assert metrics["guard/kept_step"] == 0
    kept, start = (load_file(d / "model.safetensors") for d in (result.output_dir, tiny_model_dir))
    assert all(kept[name].equal(start[name]) for name in start)


@pytest.mark.heavy
def test_an_observing_grpo_run_gives_the_stop_and_kept_step_of_a_real_guarded_run(
    tiny_model_dir, preference_parquet, reward_run, tmp_path
):
    """The gaming benchmark's observe mode inside TRL's trainer (PPO's is in test_guard.py): a
    guarded GRPO run that stops at a KL budget agrees with the replay of a run that only
    observed, step for step."""
    from alignment.config import PipelineConfig
    from alignment.methods.guard import replay_guarded
    from alignment.train.launch import launch_training

    def run(name: str, **guard):
        guard = {"enabled": True, "eval_steps": 1, "eval_prompts": 8,
                 "signal": "held_out_reward_model",
                 "held_out_reward_model": str(reward_run.output_dir), **guard}  # fmt: skip
        cfg = PipelineConfig.model_validate({"train": {
            "distributed": {"num_processes": 1, "zero_stage": 0, "device": "cpu"},
            "grpo": {"max_steps": 6, "per_device_train_batch_size": 4, "num_generations": 4,
                     "max_completion_length": 6, "learning_rate": 1e-2, "seed": 3,
                     "guard": guard},
        }})  # fmt: skip
        result = launch_training(
            "grpo", cfg, tiny_model_dir, preference_parquet, tmp_path / name,
            reward_model_path=reward_run.output_dir, on_progress=lambda event: None,
        )  # fmt: skip
        return result, json.loads((tmp_path / name / "guard.json").read_text())["evaluations"]

    observed, records = run("observed", stop=False, keep="last")
    assert observed.metrics["global_step"] == 6  # trained to the end
    assert [r["step"] for r in records] == list(range(7))
    budget = max(r["guard/kl"] for r in records[:3]) * 1.0001
    over = [r["step"] for r in records if r["guard/kl"] > budget]
    assert over and over[0] < 6, [r["guard/kl"] for r in records]
    replayed = replay_guarded(records, patience=3, kl_budget=budget, rule="each_evaluation")

    guarded, guarded_records = run("guarded", stop=True, keep="best", kl_budget=budget)
    assert guarded.metrics["global_step"] == over[0] == replayed["guard/final_step"]
    for key in ("guard/stopped", "guard/kept_step", "guard/stop_reason", "guard/kept_held_out",
                "guard/kept_kl", "guard/evaluations"):  # fmt: skip
        assert guarded.metrics[key] == replayed[key], key
    assert guarded_records == records[: len(guarded_records)]
