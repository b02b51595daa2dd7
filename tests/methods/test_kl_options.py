"""PPO's KL options against the KL each claims, exactly: a categorical policy whose samples are
enumerated (rows in proportion to their probability), so every expectation is a finite sum.

Analytic gradients in the policy's logits theta (pi = softmax(theta)):
  d KL(pi || ref) / d theta_j = pi_j (log(pi_j / ref_j) - KL(pi || ref))
  d KL(ref || pi) / d theta_j = pi_j - ref_j
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from alignment.config import PPOConfig
from alignment.methods.losses import kl_penalty
from alignment.methods.ppo import Rollout, rewards_and_advantages, update

REFERENCE = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
# Dyadic policies: 8 rows per policy reproduce each exactly, so a mean over rows is E_pi.
POLICIES = [(4, 2, 1, 1), (1, 1, 3, 3), (2, 2, 2, 2)]


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p * (p / q).log()).sum()


def grad_reverse_kl(pi: torch.Tensor) -> torch.Tensor:
    return pi * ((pi / REFERENCE).log() - kl(pi, REFERENCE))


def grad_forward_kl(pi: torch.Tensor) -> torch.Tensor:
    return pi - REFERENCE


class Categorical(torch.nn.Module):
    """A one-step policy: the same logits at every position, whatever the input."""

    def __init__(self, pi: torch.Tensor) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(pi.log().clone())

    def forward(self, input_ids, **_):
        return SimpleNamespace(logits=self.theta.expand(*input_ids.shape, -1))


class ConstantValue(torch.nn.Module):
    """A value model that predicts one learned constant (the shape token_scores expects)."""

    base_model_prefix = "body"

    def __init__(self) -> None:
        super().__init__()
        self.score = torch.nn.Linear(1, 1, dtype=torch.float64)

    def body(self, input_ids, **_):
        return SimpleNamespace(
            last_hidden_state=torch.zeros(*input_ids.shape, 1, dtype=torch.float64)
        )


class GradientRecorder:
    """An engine that keeps each step's gradient instead of applying it."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.gradients = module, []

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.gradients.append([p.grad.clone() for p in self.module.parameters()])
        self.module.zero_grad(set_to_none=False)


def enumerated_rollout(counts: tuple[int, ...]) -> tuple[Rollout, torch.Tensor]:
    """One row per sample of a policy with probabilities counts / sum(counts): (rollout, pi)."""
    pi = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    tokens = torch.tensor([y for y, n in enumerate(counts) for _ in range(n)])
    rows = len(tokens)
    batch = Rollout(
        query_responses=torch.stack([torch.zeros(rows, dtype=torch.long), tokens], dim=1),
        attention_mask=torch.ones(rows, 2, dtype=torch.long),
        response_mask=torch.ones(rows, 1, dtype=torch.long),
        context_length=1,
        logprobs=pi.log()[tokens].unsqueeze(1),
        ref_logprobs=REFERENCE.log()[tokens].unsqueeze(1),
        values=torch.zeros(rows, 1, dtype=torch.float64),
        scores=torch.zeros(rows, dtype=torch.float64),
    )
    return batch, pi


def policy_gradient(
    batch: Rollout, pi: torch.Tensor, advantages: torch.Tensor, cfg
) -> torch.Tensor:
    """The gradient of PPO's policy loss at the policy that sampled the batch (one full batch)."""
    policy, value = GradientRecorder(Categorical(pi)), GradientRecorder(ConstantValue())
    returns = torch.zeros_like(advantages)
    update(policy, value, batch, advantages, returns, cfg, torch.Generator().manual_seed(0))
    (gradient,) = policy.gradients[0]
    return gradient


def accepted(**fields) -> PPOConfig | None:
    try:
        return PPOConfig(ppo_epochs=1, **fields)
    except ValidationError:
        return None


@pytest.mark.parametrize("counts", POLICIES)
def test_every_reward_penalty_the_config_accepts_has_the_gradient_of_kl_policy_to_reference(
    counts,
):
    batch, pi = enumerated_rollout(counts)
    beta = 0.5
    options = {
        kind: accepted(kl_estimator=kind, per_device_train_batch_size=len(batch.scores))
        for kind in ("k1", "k2", "k3")
    }
    assert options["k1"] is not None
    for kind, cfg in options.items():
        if cfg is None:
            continue
        rewards, *_ = rewards_and_advantages(batch, cfg, beta)
        # one-token responses with zero values: the advantage is the reward itself
        gradient = policy_gradient(batch, pi, rewards, cfg)
        # minimising the loss follows -E[R grad log pi] = beta * grad KL(pi || ref)
        torch.testing.assert_close(gradient, beta * grad_reverse_kl(pi), msg=kind)


def test_a_k2_or_k3_reward_penalty_is_refused_with_the_reason():
    from alignment.config import load_config
    from alignment.errors import ConfigError

    for kind in ("k2", "k3"):
        with pytest.raises(ConfigError, match=r"kl_estimator.*only k1.*gradient"):
            load_config(None, [f"train.ppo.kl_estimator={kind}"])


@pytest.mark.parametrize("counts", POLICIES)
def test_the_k3_loss_term_has_the_gradient_of_kl_reference_to_policy(counts):
    batch, pi = enumerated_rollout(counts)
    cfg = PPOConfig(ppo_epochs=1, kl_loss_coef=0.3, per_device_train_batch_size=len(batch.scores))
    gradient = policy_gradient(batch, pi, torch.zeros_like(batch.logprobs), cfg)
    torch.testing.assert_close(gradient, 0.3 * grad_forward_kl(pi))
    if counts != (2, 2, 2, 2):  # the two directions differ away from a uniform policy
        assert not torch.allclose(gradient, 0.3 * grad_reverse_kl(pi), atol=1e-3)


@pytest.mark.parametrize("counts", POLICIES)
def test_why_k3_may_not_shape_the_reward(counts):
    """E[k3 grad log pi] = grad KL(pi || ref) - grad KL(ref || pi): no pull back near the reference."""
    batch, pi = enumerated_rollout(counts)
    k3 = kl_penalty(batch.logprobs, batch.ref_logprobs, "k3")[:, 0]
    tokens = batch.query_responses[:, 1]
    theta = pi.log().clone().requires_grad_(True)
    (k3 * torch.log_softmax(theta, 0)[tokens]).mean().backward()
    torch.testing.assert_close(theta.grad, grad_reverse_kl(pi) - grad_forward_kl(pi))


@pytest.mark.parametrize("counts", POLICIES)
def test_k1_and_k3_measure_kl_policy_to_reference_exactly_and_k2_is_biased(counts):
    batch, pi = enumerated_rollout(counts)
    exact = kl(pi, REFERENCE)
    for kind in ("k1", "k3"):
        estimate = kl_penalty(batch.logprobs, batch.ref_logprobs, kind).mean()
        torch.testing.assert_close(estimate, exact, msg=kind)
    k2 = kl_penalty(batch.logprobs, batch.ref_logprobs, "k2").mean()
    assert abs(float(k2 - exact)) > 1e-3


def test_the_logged_kl_uses_the_measurement_estimator_and_the_reward_stays_k1():
    batch, _ = enumerated_rollout((4, 2, 1, 1))
    k1_rewards, *_ = rewards_and_advantages(batch, PPOConfig(kl_metric="k1"), 0.5)
    k3_rewards, *_, measured = rewards_and_advantages(batch, PPOConfig(kl_metric="k3"), 0.5)
    torch.testing.assert_close(k1_rewards, k3_rewards)
    k3 = kl_penalty(batch.logprobs, batch.ref_logprobs, "k3")
    torch.testing.assert_close(measured, k3 * batch.response_mask)
