"""PPO's losses and estimators on known tensors, against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from alignment.methods.losses import (
    AdaptiveKLController,
    clipped_policy_loss,
    clipped_value_loss,
    gae_advantages,
    kl_penalty,
    masked_mean,
    whiten,
)


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(
        actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-5, rtol=0
    )


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    advantages, returns = gae_advantages(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    close(advantages, [[0.5, 0.4, 0.3]])
    close(returns, [[1.0, 1.0, 1.0]])


def test_gae_discounts_by_gamma_and_lambda():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    advantages, returns = gae_advantages(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.5)
    # delta_2 = 1 - 0.7; delta_1 = 0.9*0.7 - 0.6; delta_0 = 0.9*0.6 - 0.5; A_t = delta_t + 0.45 A_t+1
    close(advantages, [[0.11425, 0.165, 0.3]])
    close(returns, [[0.61425, 0.765, 1.0]])


def test_gae_ignores_rewards_and_values_after_the_response_ends():
    rewards = torch.tensor([[0.0, 1.0, 5.0]])
    values = torch.tensor([[0.2, 0.3, 9.0]])
    advantages, returns = gae_advantages(
        rewards, values, torch.tensor([[1, 1, 0]]), gamma=1.0, lam=1.0
    )
    close(advantages, [[0.8, 0.7, 0.0]])
    close(returns, [[1.0, 1.0, 0.0]])


def test_kl_estimators_on_known_probabilities():
    logp, ref_logp = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    close(kl_penalty(logp, ref_logp, "k1"), [math.log(2)])
    close(kl_penalty(logp, ref_logp, "k2"), [0.5 * math.log(2) ** 2])
    close(kl_penalty(logp, ref_logp, "k3"), [-0.5 + math.log(2)])  # (q - 1) - log q, q = 1/2
    # k3 is never negative, k1 is when the policy makes the token less likely than the reference
    assert kl_penalty(ref_logp, logp, "k1").item() < 0
    assert kl_penalty(ref_logp, logp, "k3").item() > 0
    close(kl_penalty(logp, logp, "k3"), [0.0])
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_penalty(logp, ref_logp, "k9")


def test_k1_and_k3_estimate_the_true_kl_on_samples():
    torch.manual_seed(0)
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.4, 0.4, 0.2])
    exact = (p * (p / q).log()).sum()
    tokens = torch.multinomial(p, 200_000, replacement=True)
    logp, ref_logp = p.log()[tokens], q.log()[tokens]
    for kind in ("k1", "k3"):
        assert abs(kl_penalty(logp, ref_logp, kind).mean() - exact) < 0.01, kind


def test_clipped_policy_loss_takes_the_pessimistic_term():
    # ratios 1.5, 1.5, 0.5, 0.5 with advantages +1, -1, +1, -1 and clip 0.2:
    # terms max(-A r, -A clip(r)) = -1.2 (clipped), 1.5, -0.5, 0.8 (clipped)
    old_logp = torch.zeros(1, 4)
    logp = torch.tensor([[math.log(1.5), math.log(1.5), math.log(0.5), math.log(0.5)]])
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, clip_fraction = clipped_policy_loss(logp, old_logp, advantages, torch.ones(1, 4), 0.2)
    close(loss, 0.15)
    close(clip_fraction, 0.5)


def test_clipped_policy_loss_at_ratio_one_is_minus_the_mean_advantage_and_masks():
    logp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    advantages = torch.tensor([[2.0, 4.0, 100.0]])
    loss, clip_fraction = clipped_policy_loss(
        logp, logp.detach(), advantages, torch.tensor([[1, 1, 0]]), 0.2
    )
    close(loss, -3.0)
    close(clip_fraction, 0.0)
    loss.backward()  # d loss / d logp = -A / n on unmasked tokens
    close(logp.grad, [[-1.0, -2.0, 0.0]])


def test_clipped_value_loss():
    # V 1.0 vs R 0: unclipped 1.0 wins; V 0.1: inside the clip; V 1.0 vs R 1.0: clipped 0.64 wins
    values = torch.tensor([[1.0, 0.1, 1.0]])
    old_values = torch.zeros(1, 3)
    returns = torch.tensor([[0.0, 0.0, 1.0]])
    loss, clip_fraction = clipped_value_loss(values, old_values, returns, torch.ones(1, 3), 0.2)
    close(loss, 0.5 * (1.0 + 0.01 + 0.64) / 3)
    close(clip_fraction, 1 / 3)


def test_whiten_gives_zero_mean_unit_variance_on_the_masked_values():
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    scale = math.sqrt(5 / 3)  # unbiased std of 1..4
    close(whiten(values, mask), [[-1.5 / scale, -0.5 / scale, 0.5 / scale, 1.5 / scale, 0.0]])
    close(
        whiten(values, mask, shift_mean=False)[0, :4],
        [(v - 2.5) / scale + 2.5 for v in (1, 2, 3, 4)],
    )
    close(masked_mean(values, mask), 2.5)


def test_adaptive_kl_controller_moves_towards_the_target_at_most_twenty_percent():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    close(torch.tensor(ctl.update(current_kl=12.0, n_steps=10)), 0.1 * 1.02)  # error clipped at 0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    close(torch.tensor(ctl.update(current_kl=6.0, n_steps=10)), 0.1)
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    close(torch.tensor(ctl.update(current_kl=5.4, n_steps=10)), 0.1 * (1 - 0.1 * 0.1))
    assert ctl.value < 0.1
