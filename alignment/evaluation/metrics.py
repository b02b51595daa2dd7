"""Evaluation metrics as pure functions on arrays of per-pair values."""

from __future__ import annotations

import numpy as np


def implicit_rewards(
    policy_logps: np.ndarray, reference_logps: np.ndarray, beta: float
) -> np.ndarray:
    """DPO's implicit reward: beta * (log pi(y|x) - log pi_ref(y|x))."""
    return beta * (np.asarray(policy_logps, float) - np.asarray(reference_logps, float))


def preference_metrics(
    chosen_rewards: np.ndarray, rejected_rewards: np.ndarray
) -> dict[str, float]:
    """Accuracy (chosen scored above rejected; ties count half) and margin statistics."""
    chosen = np.asarray(chosen_rewards, float)
    rejected = np.asarray(rejected_rewards, float)
    if chosen.shape != rejected.shape or chosen.ndim != 1:
        raise ValueError("chosen and rejected rewards must be 1-D arrays of the same length")
    if chosen.size == 0:
        raise ValueError("no pairs to evaluate")
    margin = chosen - rejected
    accuracy = float(np.mean((margin > 0) + 0.5 * (margin == 0)))
    return {
        "reward_accuracy": accuracy,
        "reward_margin_mean": float(margin.mean()),
        "reward_margin_median": float(np.median(margin)),
        "chosen_reward_mean": float(chosen.mean()),
        "rejected_reward_mean": float(rejected.mean()),
        "pairs": float(chosen.size),
    }
