"""RLOO and GRPO from TRL against the learned reward model: short 2-process ZeRO-2 jobs."""

from __future__ import annotations

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

    # a step: 4 completions on each of 2 processes = 2 prompts x 4 samples
    cfg = rl_config(
        **{
            method: {
                "max_steps": 3,
                "per_device_train_batch_size": 4,
                "num_generations": 4,
                "max_completion_length": 6,
                "learning_rate": 1e-3,
            }
        }
    )
    result = launch_training(
        method,
        cfg,
        tiny_model_dir,
        preference_parquet,
        tmp_path / method,
        reward_model_path=reward_run.output_dir,
        on_progress=lambda event: None,
    )
    assert result.metrics["global_step"] == 3
    steps = [h for h in result.history if "reward" in h]
    assert len(steps) == 3, result.history
    policy = AutoModelForCausalLM.from_pretrained(result.output_dir)
    assert policy.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=3).shape[1] > 3
