"""Forecast metrics against small cases worked out by hand."""

import numpy as np
import pytest

from training.metrics.forecast import (
    group_sum,
    interval_coverage,
    mase,
    pinball_loss,
    rmsse,
    rmsse_scale,
    seasonal_naive,
    weighted_quantile_loss,
    wrmsse,
)


def test_seasonal_naive_repeats_last_week():
    hist = np.arange(14, dtype=float)[None, :]
    fc = seasonal_naive(hist, horizon=10, m=7)
    assert fc.tolist() == [[7, 8, 9, 10, 11, 12, 13, 7, 8, 9]]


def test_rmsse_scale_starts_at_first_sale():
    # Leading zeros (and NaN = not launched) are skipped: changes 2->4 and 4->1 -> (4 + 9) / 2.
    hist = np.array([[np.nan, 0.0, 2.0, 4.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert rmsse_scale(hist).tolist() == [6.5, 0.0]


def test_rmsse_by_hand():
    hist = np.array([[1.0, 3.0, 1.0, 3.0]])  # scale = mean(4, 4, 4) = 4
    actual = np.array([[2.0, 2.0]])
    fc = np.array([[0.0, 2.0]])  # mse = (4 + 0) / 2 = 2
    assert rmsse(actual, fc, hist)[0] == pytest.approx(np.sqrt(2.0 / 4.0))


def test_wrmsse_weights_by_revenue_and_averages_levels():
    hist = np.array([[1.0, 3.0, 1.0, 3.0], [2.0, 0.0, 2.0, 0.0]])  # scales 4 and 4
    price = np.array([[1.0] * 4, [3.0] * 4])  # revenue over 2 days: 4 and 6
    actual = np.array([[2.0, 2.0], [1.0, 1.0]])
    fc = np.array([[0.0, 2.0], [1.0, 1.0]])
    levels = {"total": np.zeros(2, int), "series": np.arange(2)}
    out = wrmsse(actual, fc, hist, price, levels, weight_days=2)
    series_level = (4 * np.sqrt(2.0 / 4.0) + 6 * 0.0) / 10
    # Total: history [3, 3, 3, 3] never changes -> no weight -> NaN level, left out of the mean.
    assert out["series"] == pytest.approx(series_level)
    assert np.isnan(out["total"])
    assert out["wrmsse"] == pytest.approx(series_level)


def test_perfect_forecast_scores_zero():
    rng = np.random.default_rng(0)
    hist = rng.poisson(3.0, size=(5, 30)).astype(float)
    actual = rng.poisson(3.0, size=(5, 7)).astype(float)
    levels = {"total": np.zeros(5, int), "pair": np.arange(5) // 2, "series": np.arange(5)}
    assert wrmsse(actual, actual, hist, np.ones_like(hist), levels)["wrmsse"] == 0.0
    assert mase(actual, actual, hist) == 0.0


def test_group_sum():
    v = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert group_sum(v, np.array([7, 3, 7])).tolist() == [[3.0, 4.0], [6.0, 8.0]]


def test_mase_by_hand():
    # Lag-2 in-sample naive errors: |3-1|, |1-3|, |3-1| = 2 each -> scale 2.
    hist = np.array([[1.0, 3.0, 3.0, 1.0, 1.0]])
    actual = np.array([[4.0, np.nan, 0.0]])  # NaN day is left out: MAE = (|4-1| + |0-1|) / 2 = 2
    assert mase(actual, np.array([[1.0, 9.0, 1.0]]), hist, m=2) == pytest.approx(1.0)


def test_pinball_and_coverage_by_hand():
    actual = np.array([1.0, 3.0, np.nan])
    q = np.array([[0.0, 2.0], [0.0, 2.0], [5.0, 5.0]])
    # level 0.1: diffs 1, 3 -> 0.1, 0.3; level 0.9: diffs -1, 1 -> 0.1, 0.9
    assert pinball_loss(actual, q, [0.1, 0.9]) == pytest.approx([0.2, 0.5])
    assert weighted_quantile_loss(actual, q, [0.1, 0.9]) == pytest.approx(np.mean([2 * 0.4 / 4, 2 * 1.0 / 4]))
    assert interval_coverage(actual, q[:, 0], q[:, 1]) == 0.5


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="history"):
        seasonal_naive(np.zeros(5), 3)
    with pytest.raises(ValueError, match="quantiles shape"):
        pinball_loss(np.zeros(3), np.zeros((3, 2)), [0.1, 0.5, 0.9])
