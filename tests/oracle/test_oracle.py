"""Alignment works on the oracle task: DPO and PPO (with a learned reward model), each trained by
the platform's own jobs from the SFT policy, raise the known oracle reward over the SFT policy on
held-out prompts, at a bounded KL and without degenerate output. A small, fixed-seed version of
benchmarks/oracle.py (which runs the full sweep)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dpo_and_ppo_raise_the_oracle_reward_over_sft(tmp_path_factory):
    from alignment.config import load_config
    from alignment.oracle import experiment as ex

    root = tmp_path_factory.mktemp("oracle")
    cfg = load_config(ROOT / "configs" / "oracle" / "tiny.yaml", [f"workspace.root={root}"])
    # the topic oracle's finer reward steps need more pairs than the lexicon mean did
    settings = ex.OracleSettings(seed=0, pairs_per_prompt=16, eval_samples_per_prompt=4)

    prepared = ex.prepare(root / "run", cfg, settings)
    # BT noise at temperature 0.1 flips some labels: the closest rewards differ by 1/6 (p = 0.84)
    assert prepared.label_agreement > 0.8
    base = ex.baseline(prepared.sft_model, settings, "test")
    sft = ex.evaluate(prepared.sft_model, prepared.sft_model, base, settings)
    # the SFT policy writes reviews of every sentiment: near-neutral on average
    assert -0.3 < sft["oracle_reward"] < 0.3, sft
    assert sft["kl_to_sft"] == pytest.approx(0.0, abs=1e-6)

    # DPO and the reward model both start from the SFT policy: two jobs at once, so that one's
    # start-up (imports, building the trainer) overlaps the other's training
    with ThreadPoolExecutor(2) as pool:
        dpo_job = pool.submit(ex.train, "dpo", prepared, cfg, "dpo")
        reward_job = pool.submit(ex.train, "reward", prepared, cfg, "reward")
        reward_run = reward_job.result()
        # at kl_coef 0.05 the 30 steps collapse to a short template the reward model overrates
        # and the topic oracle scores 0 (the lexicon mean scored it near 1)
        ppo_cfg = ex.with_overrides(cfg, {"train.ppo.kl_coef": 0.2})
        ppo_job = pool.submit(
            ex.train, "ppo", prepared, ppo_cfg, "ppo", reward_model=reward_run.output_dir
        )
        dpo = ex.evaluate(dpo_job.result().output_dir, prepared.sft_model, base, settings)
        rm = ex.reward_model_accuracy(reward_run.output_dir, prepared.test_pairs)
        ppo = ex.evaluate(ppo_job.result().output_dir, prepared.sft_model, base, settings)

    # well above chance on this small set (the benchmark's larger one reaches 0.9)
    assert rm["accuracy_vs_oracle"] > 0.6, rm

    for name, policy in (("dpo", dpo), ("ppo", ppo)):
        # half of one more positive topic (1/3 each) in every review, on average
        assert policy["oracle_reward"] > sft["oracle_reward"] + 0.15, (name, policy, sft)
        assert policy["win_rate_vs_sft"] > 0.6, (name, policy)
        assert 0.0 < policy["kl_to_sft"] < 40.0, (name, policy)
        # the reward is not bought with degenerate text
        assert policy["empty_rate"] < 0.05, (name, policy)
        assert policy["repetition_rate"] < 0.1, (name, policy)
        assert policy["unique_response_rate"] * policy["samples"] >= 5, (name, policy)
        assert policy["length_mean"] < 3 * sft["length_mean"], (name, policy)
