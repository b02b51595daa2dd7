"""RL losses and estimators for PPO: small pure functions on tensors, tested on known values.

Conventions: tensors are [batch, response_length]; `mask` is 1 on response tokens (up to and
including the first end-of-sequence token) and 0 on the padding after them. Masks are
right-aligned (a response's tokens come first, its padding after).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where mask is 1 (over all elements, or along `dim`)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of `values` where mask is 1."""
    mean = masked_mean(values, mask)
    count = mask.to(values.dtype).sum()
    sum_sq = masked_mean((values - mean) ** 2, mask) * count
    return sum_sq / (count - 1).clamp(min=1.0)


def whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Scale the masked values to unit variance (and zero mean when shift_mean); 0 where masked."""
    import torch

    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from log-probs of tokens sampled from the policy.

    Schulman's "Approximating KL divergence": k1 = log(pi / pi_ref), unbiased, can be negative;
    k2 = log(pi / pi_ref)^2 / 2, biased, low variance; k3 = (q - 1) - log q with q = pi_ref / pi,
    unbiased and never negative. These estimate the KL's value; only k1 placed in a reward has
    the KL's expected gradient (see `forward_kl_loss` for k3 as a loss).
    """
    import torch

    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; known: k1, k2, k3")


def forward_kl_loss(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token mean of k3 (GRPO's KL term), to minimise; `logp` carries the gradient.

    On tokens sampled from the policy its expected gradient is that of KL(reference || policy),
    the forward KL, per token at the policy's own prefixes: E[(1 - pi_ref/pi) grad log pi] =
    -sum(pi_ref grad log pi). Not the reverse KL(policy || reference) that k1 in the reward pulls.
    """
    return masked_mean(kl_penalty(logp, ref_logp, "k3"), mask)


def gae_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016): (advantages, returns).

    values[:, t] is the value of the state before token t; the value after the last response
    token is 0 (the episode ends there). Returns are advantages + values. Both are 0 where masked.
    """
    import torch

    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    length = rewards.shape[1]
    last = torch.zeros_like(rewards[:, 0])
    reversed_advantages = []
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        reversed_advantages.append(last)
    advantages = torch.stack(reversed_advantages[::-1], dim=1) * mask
    return advantages, (advantages + values) * mask


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate loss (to minimise) and the share of tokens where the clip bound.

    loss = mean over tokens of max(-A * ratio, -A * clamp(ratio, 1 - clip, 1 + clip)).
    """
    import torch

    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).to(logp.dtype), mask)
    return loss, clip_fraction.detach()


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss, 0.5 * mean(max((V - R)^2, (V_clipped - R)^2)), and its clip share.

    V_clipped keeps the new value within `clip` of the value the rollout was scored with.
    """
    import torch

    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    clip_fraction = masked_mean((clipped_loss > unclipped_loss).to(values.dtype), mask)
    return loss, clip_fraction.detach()


class AdaptiveKLController:
    """Ziegler et al. (2019): move the KL coefficient towards a target KL per sequence.

    coef *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        """Update after `n_steps` rollouts whose mean KL per sequence was `current_kl`."""
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
        return self.value


class FixedKLController:
    """A constant KL coefficient, with the adaptive controller's interface."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


# --- preference losses with soft labels ------------------------------------------------------


def soft_preference_loss(margin: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
    """Per-pair soft Bradley-Terry loss -[p log s(d) + (1 - p) log s(-d)], d = `margin`.

    p is the probability that the chosen response is preferred; p = 1 is the ordinary loss
    -log s(d). Its gradient in d is s(d) - p: zero at d = logit(p), so a pair at p = 0.5 pulls d
    to 0 and favours neither response (no gradient at all where the model is indifferent).
    """
    import torch.nn.functional as F

    return -(preference * F.logsigmoid(margin) + (1.0 - preference) * F.logsigmoid(-margin))


def soft_label_correction(margin: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
    """What turns the hard loss -log s(d) into the soft one: (1 - p) * d, per pair.

    From log s(-d) = log s(d) - d, the soft loss is -log s(d) + (1 - p) d exactly, so a trainer
    that computes the hard loss needs only this term added (conservative DPO with per-pair
    label smoothing 1 - p).
    """
    return (1.0 - preference) * margin
