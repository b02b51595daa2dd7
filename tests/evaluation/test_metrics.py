import numpy as np
import pytest

from alignment.evaluation.metrics import implicit_rewards, preference_metrics


def test_implicit_rewards_scale_the_log_ratio_by_beta():
    rewards = implicit_rewards(np.array([-1.0, -3.0]), np.array([-2.0, -2.0]), beta=0.5)
    np.testing.assert_allclose(rewards, [0.5, -0.5])


def test_accuracy_counts_ties_as_half_and_reports_margins():
    metrics = preference_metrics(np.array([1.0, 0.0, 2.0, 0.5]), np.array([0.0, 1.0, 2.0, 0.0]))
    assert metrics["reward_accuracy"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert metrics["reward_margin_mean"] == pytest.approx((1 - 1 + 0 + 0.5) / 4)
    assert metrics["pairs"] == 4


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError):
        preference_metrics(np.array([1.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        preference_metrics(np.array([]), np.array([]))
