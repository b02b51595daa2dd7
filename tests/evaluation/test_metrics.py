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


# --- the suite's metrics ------------------------------------------------------------------


def test_win_rate_counts_ties_half_and_is_antisymmetric():
    from alignment.evaluation.metrics import win_indicators, win_rate

    a, b = np.array([1.0, 0.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(win_indicators(a, b), [1, 0, 0.5, 1])
    assert win_rate(a, b) == pytest.approx(0.625)
    assert win_rate(a, b) + win_rate(b, a) == pytest.approx(1.0)
    assert win_rate(a, a) == 0.5
    assert win_rate(np.array([0.5 + 1e-9]), np.array([0.5]), tie_tolerance=1e-6) == 0.5
    with pytest.raises(ValueError):
        win_rate(np.array([]), np.array([]))


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    from alignment.evaluation.metrics import bootstrap_ci

    values = np.random.default_rng(1).random(50)
    low, high = bootstrap_ci(values, np.mean, n=500, alpha=0.05, seed=3)
    assert low < values.mean() < high
    assert bootstrap_ci(values, np.mean, n=500, alpha=0.05, seed=3) == (low, high)
    assert bootstrap_ci(values, np.mean, n=500, alpha=0.05, seed=4) != (low, high)
    narrow = bootstrap_ci(values, np.mean, n=500, alpha=0.5, seed=3)
    assert low <= narrow[0] <= narrow[1] <= high
    assert bootstrap_ci(np.full(10, 0.5), seed=0) == (0.5, 0.5)


def test_correlations():
    from alignment.evaluation.metrics import pearson, spearman

    x = np.arange(10.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert spearman(x, x**3) == pytest.approx(1.0)  # monotone, not linear
    assert pearson(x, x**3) < 1.0
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert np.isnan(pearson(x, np.ones(10)))
    assert spearman(np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(
        0.8660254
    )


def test_kl_estimates_are_zero_for_the_same_model_and_respect_the_mask():
    from alignment.evaluation.metrics import kl_estimate

    rng = np.random.default_rng(0)
    logp = np.log(rng.random((3, 5)))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], float)
    same = kl_estimate(logp, logp, mask)
    np.testing.assert_allclose(same["k1"], 0)
    np.testing.assert_allclose(same["k3"], 0)
    shifted = kl_estimate(logp, logp - 1.0, mask)  # policy puts more mass on its own samples
    np.testing.assert_allclose(shifted["k1"], mask.sum(1))
    np.testing.assert_allclose(shifted["k3"], mask.sum(1) * (np.exp(-1) - 1 + 1))
    # padding can hold anything: it never counts
    garbage = np.where(mask > 0, logp, 123.0)
    np.testing.assert_allclose(kl_estimate(garbage, logp, mask)["k3"], 0)
    assert (kl_estimate(logp, np.log(rng.random((3, 5))), mask)["k3"] >= 0).all()


def test_perplexity_and_length_stats():
    from alignment.evaluation.metrics import length_stats, perplexity

    assert perplexity(np.array([2.0, 4.0]), np.array([2, 4])) == pytest.approx(np.e)
    assert perplexity(0.0, 5) == 1.0
    with pytest.raises(ValueError):
        perplexity(1.0, 0)
    stats = length_stats([1, 2, 3, 10])
    assert stats["mean"] == 4.0 and stats["median"] == 2.5 and stats["max"] == 10.0


def test_refusal_markers():
    from alignment.evaluation.metrics import is_refusal, rate

    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("  I CANNOT do this")
    assert is_refusal("I\u2019m unable to assist")  # typographic apostrophe
    assert is_refusal("")  # an empty answer evades
    assert not is_refusal("17 plus 25 is 42.")
    assert not is_refusal("x " * 150 + "I cannot")  # past the window: not an opening refusal
    assert rate([True, False, False, True]) == 0.5
    assert np.isnan(rate([]))


def test_length_correlation_is_on_the_per_token_implicit_reward():
    from alignment.evaluation.metrics import (
        implicit_reward_length_corr,
        per_token_implicit_rewards,
        spearman,
    )

    # i.i.d. per-token log-ratios with a positive mean: no length bias at all, yet their sum
    # grows with the number of tokens
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, size=2000)
    mask = (np.arange(40)[None, :] < lengths[:, None]).astype(float)
    policy = rng.normal(-1.0, 0.3, size=mask.shape)
    ref = policy - rng.normal(0.2, 0.5, size=mask.shape)
    per_token = per_token_implicit_rewards(policy, ref, mask, beta=0.1)
    np.testing.assert_allclose(per_token, 0.1 * ((policy - ref) * mask).sum(1) / lengths)
    summed = 0.1 * ((policy - ref) * mask).sum(1)
    assert spearman(summed, lengths) > 0.5  # by construction, not by any bias
    assert abs(implicit_reward_length_corr(policy, ref, mask, beta=0.1)) < 0.06


def _lc_data(n, intercept, slope, seed):
    rng = np.random.default_rng(seed)
    length_diff = rng.normal(30.0, 60.0, size=n)  # the candidate tends to answer longer
    x = np.tanh(length_diff / length_diff.std())
    p = 1.0 / (1.0 + np.exp(-(intercept + slope * x)))
    return (rng.random(n) < p).astype(float), length_diff


@pytest.mark.parametrize("intercept", [0.0, 0.8])
def test_length_controlled_win_rate_recovers_the_win_rate_at_equal_length(intercept):
    from alignment.evaluation.metrics import length_controlled_win_rate

    wins, length_diff = _lc_data(20000, intercept, 2.0, seed=1)
    known = 1.0 / (1.0 + np.exp(-intercept))
    assert wins.mean() > known + 0.05  # the raw win rate is inflated by length
    assert length_controlled_win_rate(wins, length_diff) == pytest.approx(known, abs=0.02)


def test_length_controlled_win_rate_interval_covers_the_known_answer_and_edge_cases():
    from alignment.evaluation.metrics import lc_win_rate_ci, length_controlled_win_rate

    wins, length_diff = _lc_data(600, 0.4, 1.5, seed=2)
    known = 1.0 / (1.0 + np.exp(-0.4))
    low, high = lc_win_rate_ci(wins, length_diff, n=300, seed=0)
    assert low <= length_controlled_win_rate(wins, length_diff) <= high
    assert low <= known <= high and high - low < 0.2
    # equal lengths everywhere: nothing to control for, the plain win rate
    ties = np.array([1.0, 0.0, 0.5, 1.0])
    assert length_controlled_win_rate(ties, np.zeros(4)) == pytest.approx(ties.mean(), abs=1e-6)
    # one length difference for every prompt: length and candidate cannot be told apart
    assert np.isnan(length_controlled_win_rate(ties, np.full(4, 12.0)))
    # wins decided by length alone: finite, near a coin flip at equal length
    by_length = np.array([10.0, 20.0, -10.0, -20.0, 5.0, -5.0])
    assert length_controlled_win_rate((by_length > 0).astype(float), by_length) == (
        pytest.approx(0.5, abs=0.05)
    )
