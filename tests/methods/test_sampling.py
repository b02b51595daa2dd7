"""Samples meant to come from the policy do: no logits processor or stopping rule is inherited from
a checkpoint's generation_config.json, whatever it ships."""

from __future__ import annotations

import json
import shutil

import pytest

# Everything a checkpoint may ship that bends or stops sampling (Qwen2.5-Instruct ships
# repetition_penalty 1.05, for one).
NON_NEUTRAL = {
    "do_sample": True,
    "temperature": 0.3,
    "top_k": 5,
    "top_p": 0.5,
    "typical_p": 0.9,
    "min_p": 0.1,
    "epsilon_cutoff": 0.01,
    "repetition_penalty": 1.3,
    "no_repeat_ngram_size": 3,
    "min_new_tokens": 2,
    "suppress_tokens": [7],
    "bad_words_ids": [[8]],
    "renormalize_logits": True,
    "max_time": 30.0,
}


@pytest.fixture(scope="module")
def opinionated_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a generation_config.json full of non-neutral settings."""
    path = tmp_path_factory.mktemp("opinionated") / "model"
    shutil.copytree(tiny_model_dir, path)
    config = json.loads((path / "generation_config.json").read_text())
    (path / "generation_config.json").write_text(json.dumps({**config, **NON_NEUTRAL}))
    return path


@pytest.fixture()
def spied_policy(opinionated_model_dir):
    """The policy, recording the logits processors and stopping criteria of every generate call."""
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(opinionated_model_dir).eval()
    assert policy.generation_config.repetition_penalty == 1.3  # the checkpoint's settings load
    seen = {"processors": [], "stopping": []}
    for name, key in (
        ("_get_logits_processor", "processors"),
        ("_get_stopping_criteria", "stopping"),
    ):
        real = getattr(policy, name)

        def spy(*args, _real=real, _key=key, **kwargs):
            built = _real(*args, **kwargs)
            seen[_key].append([type(item).__name__ for item in built])
            return built

        setattr(policy, name, spy)
    return policy, seen


def assert_pure_sampling(seen: dict) -> None:
    assert seen["processors"] and seen["stopping"]
    for processors in seen["processors"]:
        assert processors == ["TemperatureLogitsWarper"]
    for stopping in seen["stopping"]:
        assert set(stopping) <= {"MaxLengthCriteria", "EosTokenCriteria"}, stopping


def test_ppo_rollouts_sample_with_the_temperature_warper_only(spied_policy):
    import torch
    from transformers import AutoModelForSequenceClassification

    from alignment.config import PPOConfig
    from alignment.methods.ppo import TorchEngine, rollout

    policy, seen = spied_policy
    value = AutoModelForSequenceClassification.from_pretrained(policy.name_or_path, num_labels=1)
    torch.manual_seed(0)
    rollout(
        TorchEngine(policy, None), policy, TorchEngine(value, None),
        lambda q, a, m: m.sum(1).float(), [[5, 6, 7], [8, 9]],
        PPOConfig(max_new_tokens=4, temperature=0.7), pad_id=0, eos_id=1,
    )  # fmt: skip
    assert_pure_sampling(seen)
    assert policy.generation_config.repetition_penalty == 1.3  # saved with the policy as shipped


def test_oracle_samples_with_the_temperature_warper_only(spied_policy, opinionated_model_dir):
    from transformers import AutoTokenizer

    from alignment.oracle.evaluate import sample

    policy, seen = spied_policy
    tokenizer = AutoTokenizer.from_pretrained(opinionated_model_dir)
    sample(policy, tokenizer, ["What is 2 plus 2?"], max_new_tokens=4, seed=0, temperature=0.7)
    assert_pure_sampling(seen)
