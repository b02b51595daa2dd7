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
