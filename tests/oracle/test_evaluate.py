"""Scoring a policy on the oracle task, and the `alignment oracle` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_samples_are_seeded_and_a_policy_has_no_kl_to_itself(tiny_model_dir):
    import torch

    from alignment.oracle.evaluate import load_policy, sample, summarize

    policy, tokenizer = load_policy(tiny_model_dir)
    prompts = ["Review of the lamp:", "What do you think of the fan?"] * 4
    first = sample(policy, tokenizer, prompts, 8, seed=3, reference=policy)
    again = sample(policy, tokenizer, prompts, 8, seed=3, reference=policy)
    assert first.texts == again.texts
    assert len(first.texts) == len(prompts)
    assert all(1 <= n <= 8 for n in first.token_counts)
    metrics = summarize(first, first.rewards)
    assert metrics["kl_to_sft"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["win_rate_vs_sft"] == 0.5  # every comparison with itself is a tie

    # a changed policy has a positive KL (k3 is never negative) on its own samples
    other, _ = load_policy(tiny_model_dir)
    with torch.no_grad():
        other.lm_head.weight.mul_(3.0)  # sharper next-token distributions
    shifted = sample(other, tokenizer, prompts, 8, seed=3, reference=policy)
    assert summarize(shifted, first.rewards)["kl_to_sft_k3"] > 0.0
    assert np.all(shifted.mask.sum(1) == np.array(shifted.token_counts))


def test_oracle_data_command_writes_the_demonstration_dataset(tmp_path):
    from alignment.cli import main
    from alignment.oracle.experiment import read_records
    from alignment.oracle.task import prompt_oracle_reward

    summary = tmp_path / "summary.json"
    code = main(["oracle", "data", "--out", str(tmp_path / "demo"), "--json", str(summary)])
    assert code == 0
    written = json.loads(summary.read_text())
    assert set(written) == {"sft", "preferences", "held_out_preferences", "task"}
    pairs = read_records(tmp_path / "demo" / "preferences.jsonl")
    assert len(pairs) == written["preferences"]["records"] > 500
    for record in pairs[:20]:
        meta = json.loads(record["meta"])
        product = record["prompt"][0]["content"]
        assert meta["oracle_chosen"] == prompt_oracle_reward(
            product, record["chosen"][0]["content"]
        )
        assert record["score_chosen"] > record["score_rejected"]
        assert record["source"] == "oracle"
    # temperature 0.1: most labels follow the oracle, some are flipped by the noise
    assert 0.9 < written["preferences"]["label_agreement_with_oracle"] < 1.0
    # without --out the data goes under the workspace's runs folder
    assert main(["oracle", "data", "--workspace", str(tmp_path / "ws")]) == 0
    (again,) = (tmp_path / "ws" / "runs").glob("oracle-data-*")
    assert (again / "preferences.jsonl").read_bytes() == (
        tmp_path / "demo" / "preferences.jsonl"
    ).read_bytes()


def test_intervals_resample_prompts_not_samples():
    from alignment.oracle.evaluate import Samples, cluster_bootstrap_ci, summarize

    # one prompt always wins, the other always loses: 16 samples, but only 2 independent prompts
    prompts = ["Review of the lamp:"] * 8 + ["Review of the fan:"] * 8
    texts = ["The lid is superb."] * 8 + ["The lid is awful."] * 8
    samples = Samples(prompts, texts, [4] * 16, np.zeros((16, 4)))
    metrics = summarize(samples, np.zeros(16))
    assert metrics["win_rate_vs_sft"] == 0.5 and metrics["prompts"] == 2
    low, high = metrics["win_rate_vs_sft_ci"]
    assert low == 0.0 and high == 1.0  # a prompt drawn twice, or the other one twice
    # independent prompts: the same as resampling samples
    values = np.random.default_rng(0).random(200)
    low, high = cluster_bootstrap_ci(values, [str(i) for i in range(200)], n=2000)
    se = values.std() / np.sqrt(200)
    assert low == pytest.approx(values.mean() - 1.96 * se, abs=0.01)
    assert high == pytest.approx(values.mean() + 1.96 * se, abs=0.01)


def test_hyperparameters_are_chosen_on_validation_within_the_kl_bound():
    from alignment.oracle.experiment import select_on_validation

    def run(name, win, kl, test_win):
        return {"name": name, "validation": {"win_rate_vs_sft": win, "kl_to_sft": kl},
                "test": {"win_rate_vs_sft": test_win}}  # fmt: skip

    runs = [run("a", 0.80, 5.0, 0.95), run("b", 0.85, 9.0, 0.70), run("c", 0.99, 30.0, 0.99)]
    assert select_on_validation(runs, 15.0)["name"] == "b"  # not the best on test, not c's KL
    assert select_on_validation(runs, 1.0) is None


def test_a_degenerate_run_is_never_chosen_however_it_wins():
    from alignment.oracle.experiment import select_on_validation

    def run(name, win, unique):
        return {"name": name,
                "validation": {"win_rate_vs_sft": win, "kl_to_sft": 4.0, "unique_response_rate": unique}}  # fmt: skip

    runs = [run("collapsed", 0.90, 0.30), run("varied", 0.80, 0.98)]
    assert select_on_validation(runs, 15.0)["name"] == "collapsed"  # without the bar
    assert select_on_validation(runs, 15.0, min_unique=0.5)["name"] == "varied"
    assert select_on_validation(runs[:1], 15.0, min_unique=0.5) is None
