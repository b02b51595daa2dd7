"""PPO as a whole: reward rises on a fixed learnable task with KL held in check (in-process), and
a real 2-process ZeRO-2 job through launch_training that resumes and saves a loadable policy."""

from __future__ import annotations

import pytest

from alignment.config import PPOConfig


def _share_reward(query_responses, attention_mask, response_mask):
    """Rule-based 'reward model': how many response tokens have an id divisible by 4 (not special)."""
    responses = query_responses[:, query_responses.shape[1] - response_mask.shape[1] :]
    hits = (responses % 4 == 0) & (responses > 4) & response_mask.bool()
    return hits.float().sum(1)


@pytest.mark.slow
def test_ppo_raises_a_learnable_reward_while_the_adaptive_controller_bounds_kl(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from alignment.methods.losses import AdaptiveKLController
    from alignment.methods.ppo import TorchEngine, ppo_step, prompt_ids

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval().requires_grad_(False)
    value = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    cfg = PPOConfig(
        learning_rate=3e-3,
        max_new_tokens=8,
        per_device_train_batch_size=16,
        mini_batch_size=4,
        ppo_epochs=2,
        kl_coef=0.05,
        adaptive_kl=True,
        target_kl=1.0,
        kl_horizon=100,
    )
    engines = [
        TorchEngine(model, torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate))
        for model in (policy, value)
    ]
    rows = {
        "prompt": [
            [{"role": "user", "content": f"What is {a} plus {b}?"}]
            for a in range(4)
            for b in range(4)
        ]
    }
    prompts = prompt_ids(tokenizer, rows, 64)
    kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
    generator = torch.Generator().manual_seed(0)
    history = []
    for _ in range(8):
        metrics = ppo_step(
            *engines, reference, _share_reward, prompts, cfg, kl_ctl.value,
            tokenizer.pad_token_id, tokenizer.eos_token_id, generator,
        )  # fmt: skip
        metrics["kl_coef"] = kl_ctl.value
        kl_ctl.update(metrics["kl"], len(prompts))
        history.append(metrics)

    rewards = [h["reward"] for h in history]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.5, rewards
    kls = [h["kl"] for h in history]
    assert max(kls) < 8.0, kls  # nats per sequence of 8 tokens
    # the controller raised the KL coefficient after each step above its target, lowered it below
    coefs = [h["kl_coef"] for h in history] + [kl_ctl.value]
    for step, h in enumerate(history):
        assert (coefs[step + 1] > coefs[step]) == (h["kl"] > cfg.target_kl), (kls, coefs)
    assert all(0.0 <= h["policy/clipfrac"] <= 1.0 for h in history)


@pytest.mark.slow
def test_ppo_job_under_zero2_resumes_and_saves_a_loadable_policy(
    tiny_model_dir, preference_parquet, reward_run, rl_config, tmp_path
):
    import torch
    from transformers import AutoModelForCausalLM

    from alignment.train.launch import launch_training

    cfg = rl_config(
        ppo={
            "max_steps": 4,
            "save_steps": 2,
            "per_device_train_batch_size": 4,
            "max_new_tokens": 6,
            "ppo_epochs": 2,
            "adaptive_kl": True,
        }
    )

    class Stop(Exception):
        pass

    def stop_at_three(event):
        if event["step"] >= 3:  # the checkpoint of step 2 is complete by now
            raise Stop

    run = dict(
        method="ppo", cfg=cfg, model_path=tiny_model_dir, train_path=preference_parquet,
        output_dir=tmp_path / "ppo", reward_model_path=reward_run.output_dir,
    )  # fmt: skip
    with pytest.raises(Stop):
        launch_training(**run, on_progress=stop_at_three)
    assert (tmp_path / "ppo" / "checkpoints" / "state.json").is_file()

    events = []
    result = launch_training(**run, resume=True, on_progress=events.append)
    assert events[0]["step"] == 3  # resumed, not restarted
    assert [h["step"] for h in result.history] == [1, 2, 3, 4]
    assert result.metrics["global_step"] == 4
    assert all("reward" in h and "kl" in h and "kl_coef" in h for h in result.history)
    assert "loss" in events[-1]["message"]

    policy = AutoModelForCausalLM.from_pretrained(result.output_dir)
    out = policy.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=3)
    assert out.shape[1] > 3


def test_rollout_batches_cover_the_shard_each_epoch_and_repeat_on_resume():
    from alignment.methods.ppo import prompts_for_step

    shard = list(range(10))
    first_epoch = [p for step in range(5) for p in prompts_for_step(shard, step, 2, seed=3)]
    assert sorted(first_epoch) == shard
    assert prompts_for_step(shard, 7, 4, seed=3) == prompts_for_step(shard, 7, 4, seed=3)


def test_rollout_masks_after_the_first_eos_and_scores_the_last_token(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from alignment.methods.ppo import TorchEngine, rollout

    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    value = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    # Nearly greedy sampling, with "end of sequence" set to the first prompt's greedy next token:
    # its response is that one token; the other runs to max_new_tokens or its own stop.
    with torch.no_grad():
        eos = int(policy(input_ids=torch.tensor([[5, 6, 7]])).logits[0, -1].argmax())

    def score(query_responses, attention_mask, response_mask):
        return response_mask.sum(1).float()

    batch = rollout(
        TorchEngine(policy, None), policy, TorchEngine(value, None), score,
        [[5, 6, 7], [8, 9]], PPOConfig(max_new_tokens=6, temperature=0.01),
        pad_id=0, eos_id=eos,
    )  # fmt: skip
    assert batch.query_responses.shape == (2, 3 + 6)
    assert batch.attention_mask[1, 0] == 0  # the shorter prompt is padded on the left
    for row in range(2):
        mask = batch.response_mask[row]
        length = int(mask.sum())
        assert mask[:length].all() and not mask[length:].any()  # contiguous from the start
        tokens = batch.query_responses[row, 3:]
        if length < 6:
            assert tokens[length - 1] == eos and (tokens[length:] == 0).all()
    assert int(batch.response_mask[0].sum()) == 1
    assert torch.equal(batch.scores, batch.response_mask.sum(1).float())
    assert batch.logprobs.shape == batch.ref_logprobs.shape == batch.values.shape == (2, 6)
    torch.testing.assert_close(batch.logprobs, batch.ref_logprobs)  # reference = policy here


def test_cut_at_eos_pads_masks_and_keeps_the_first_end():
    import torch

    from alignment.methods.ppo import cut_at_eos

    eos, pad = 2, 0
    sampled = torch.tensor([[5, 2, 7], [5, 6, 7], [2, 9, 2]])
    responses, mask = cut_at_eos(sampled, 5, eos, pad)
    assert responses.tolist() == [[5, 2, 0, 0, 0], [5, 6, 7, 0, 0], [2, 0, 0, 0, 0]]
    # no end token: every sampled token counts, none of the padding added after them
    assert mask.tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]
    _, full_width = cut_at_eos(torch.tensor([[5, 6, 7]]), 3, eos, pad)
    assert full_width.tolist() == [[1, 1, 1]]
    _, pad_is_eos = cut_at_eos(torch.tensor([[5, 6], [2, 2]]), 4, eos, pad_id=eos)
    assert pad_is_eos.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0]]


def test_a_mini_batch_size_that_does_not_divide_the_batch_is_refused():
    from alignment.config import load_config
    from alignment.errors import ConfigError

    with pytest.raises(ConfigError, match="mini_batch_size=4 does not divide"):
        load_config(
            None, ["train.ppo.per_device_train_batch_size=6", "train.ppo.mini_batch_size=4"]
        )
    assert load_config(None, ["train.ppo.mini_batch_size=2"]).train.ppo.mini_batch_size == 2


def test_every_rollout_is_used_in_each_epoch_of_updates(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from alignment.methods.ppo import TorchEngine, rollout, update

    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    value = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    engines = [
        TorchEngine(model, torch.optim.SGD(model.parameters(), lr=0.0)) for model in (policy, value)
    ]
    prompts = [[5, 6, 7], [8, 9], [5], [6, 7], [9, 8, 7], [5, 5]]
    cfg = PPOConfig(max_new_tokens=3, per_device_train_batch_size=6, ppo_epochs=2)
    batch = rollout(
        engines[0], policy, engines[1], lambda q, a, m: m.sum(1).float(), prompts, cfg, 0, 1
    )
    rows = []
    policy.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    advantages = torch.zeros_like(batch.logprobs)
    # a mini-batch size that leaves a remainder, as a caller without the config check might pass
    cfg.mini_batch_size = 4
    update(*engines, batch, advantages, advantages, cfg, torch.Generator().manual_seed(0))
    assert rows == [4, 2, 4, 2]
