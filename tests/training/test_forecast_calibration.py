"""Fitting the period-total calibration: it must bring the P10-P90 coverage of totals to 80 % on data
whose daily quantiles are too narrow and whose days share a level error, and refuse to fit on too little."""

import numpy as np
import pytest

from serving.forecast.calibration import TotalsCalibration
from training.forecast.calibration import (
    MIN_TOTALS,
    coverage_table,
    fit_totals_calibration,
    lead_time_coverage,
    pooled_lead_time_coverage,
    total_coverage,
)

H = 28
BASE = (0.1, 0.5, 0.9)


def _draw(n: int, seed: int, level_sd: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Demand with a per-series level error shared by all its days (the correlation that summed or
    independent daily quantiles miss) and a forecast whose daily spread is half the daily noise."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(2.0, 20.0, n)
    level = np.exp(rng.normal(0.0, level_sd, n))[:, None]
    actual = np.maximum(mu[:, None] * level + rng.normal(0.0, 1.0, (n, H)) * np.sqrt(mu)[:, None], 0.0)
    half = 1.2816 * 0.5 * np.sqrt(mu)
    daily = np.stack([mu - half, mu, mu + half], axis=-1)[:, None, :].repeat(H, axis=1)
    return np.maximum(daily, 0.0), actual


def test_calibrated_totals_cover_80_percent_on_fresh_data_where_summed_quantiles_do_not():
    daily, actual = _draw(3000, seed=0)
    cal = fit_totals_calibration(daily, actual, np.full(3000, H), BASE)
    test_daily, test_actual = _draw(3000, seed=1)
    for days in (1, 7, 14, 28):
        before = total_coverage(test_daily, test_actual, days, BASE, None)
        after = total_coverage(test_daily, test_actual, days, BASE, cal)
        assert abs(before - 0.8) > 0.15, (days, before)  # the premise: uncalibrated totals are off
        assert abs(after - 0.8) < 0.03, (days, after)
    # Scores widen with the period: the shared level error grows with L, the summed spread only with L too.
    assert cal.scores[-1, 1, -1] > 1.0 and cal.n_fit == (3000,) * H


def test_a_calibration_fitted_on_other_data_does_not_pass_for_calibrated():
    daily, actual = _draw(3000, seed=0, level_sd=0.05)
    cal = fit_totals_calibration(daily, actual, np.full(3000, H), BASE)
    test_daily, test_actual = _draw(3000, seed=1, level_sd=0.5)  # four times the level error
    assert total_coverage(test_daily, test_actual, 28, BASE, cal) < 0.6


def test_only_totals_inside_the_validation_split_and_observed_days_count():
    daily, actual = _draw(40, seed=2)
    usable = np.repeat([28, 7], 20)  # half the samples come from a late origin: 7 validation days left
    actual[0, 3] = np.nan  # an unobserved day ends that sample's totals at 3 days
    cal = fit_totals_calibration(daily, actual, usable, BASE)
    assert cal.n_fit[2] == 40 and cal.n_fit[3] == 39 and cal.n_fit[6] == 39 and cal.n_fit[7] == 19
    with pytest.raises(ValueError, match=f"needs {MIN_TOTALS}"):
        fit_totals_calibration(daily[:5], actual[:5], usable[:5], BASE)
    with pytest.raises(ValueError, match="usable_days"):
        fit_totals_calibration(daily, actual, usable[:3], BASE)


def test_lead_time_coverage_reports_each_way_and_identity_scores_equal_summed_quantiles():
    daily, actual = _draw(500, seed=3)
    identity = TotalsCalibration((0.1, 0.5, 0.9), tuple(range(1, H + 1)), np.tile([-1.0, 0.0, 1.0], (H, 1)), BASE)
    cov = lead_time_coverage(actual, daily, BASE, identity)
    assert set(cov) == {f"{d}d_{k}" for d in (7, 14, 28) for k in ("rho0", "rho0.5", "rho1", "calibrated")}
    for d in (7, 14, 28):
        assert cov[f"{d}d_calibrated"] == pytest.approx(cov[f"{d}d_rho1"])
        assert cov[f"{d}d_rho0"] <= cov[f"{d}d_rho0.5"] <= cov[f"{d}d_rho1"]
    assert "calibrated on the validation split" in coverage_table(cov)


def test_slow_movers_are_calibrated_apart_from_regular_series():
    """Slow movers (summed P10 = 0, mostly zero totals) must not set the regular series' lower bound."""
    daily, actual = _draw(2000, seed=4)
    rng = np.random.default_rng(5)
    slow_actual = rng.poisson(0.05, (2000, H)).astype(float)
    slow_daily = np.tile([0.0, 0.0, 0.3], (2000, H, 1))
    cal = fit_totals_calibration(
        np.concatenate([daily, slow_daily]), np.concatenate([actual, slow_actual]), np.full(4000, H), BASE
    )
    assert cal.scores[6, 0, 2] == 0.0 and cal.scores[6, 1, 2] < -1.0  # P10 scores: slow at its zero total
    test_daily, test_actual = _draw(2000, seed=6)
    assert abs(total_coverage(test_daily, test_actual, 7, BASE, cal) - 0.8) < 0.03


def test_pooled_coverage_weights_each_origin_and_skips_totals_that_do_not_fit():
    rng = np.random.default_rng(3)
    s, h = 40, 28
    daily = np.sort(rng.gamma(2.0, 1.0, (s, 3, h, len(BASE))), axis=-1)
    actual = rng.poisson(2.0, (s, h)).astype(float)
    actual[0, 20] = np.nan  # one series misses a day late in the test window
    pooled = pooled_lead_time_coverage(actual, daily, [0, 7, 14], BASE)
    for days, offsets in ((7, [0, 7, 14]), (14, [0, 7, 14]), (28, [0])):
        per = [
            lead_time_coverage(actual[:, o : o + days], daily[:, i], BASE, None, (days,)) for i, o in enumerate(offsets)
        ]
        n = [int(np.isfinite(actual[:, o : o + days]).all(axis=1).sum()) for o in offsets]
        want = sum(c[f"{days}d_rho1"] * k for c, k in zip(per, n, strict=True)) / sum(n)
        assert pooled[f"{days}d_rho1"] == pytest.approx(want)
    assert n == [39]  # the 28-day total: only the first origin, without the series that misses a day


def _intermittent(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow movers whose daily quantiles are all zero (rightly: they sell on a few days in a hundred) while
    their rates differ fortyfold; the mean forecast knows the rate."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.01, 0.4, n)
    actual = rng.poisson(rate[:, None], (n, H)).astype(float)
    return np.zeros((n, H, len(BASE))), actual, np.repeat(rate[:, None], H, axis=1)


def test_slow_movers_scaled_by_their_mean_keep_coverage_at_every_rate():
    """With the floor alone every slow mover gets one absolute interval: the fast ones among them fall out of
    it, the slow ones are over-covered. Scaled by sqrt(mean total), the bounds follow each series' rate."""
    daily, actual, mean = _intermittent(4000, seed=7)
    floor_cal = fit_totals_calibration(daily, actual, np.full(4000, H), BASE)
    mean_cal = fit_totals_calibration(daily, actual, np.full(4000, H), BASE, mean=mean)
    assert (floor_cal.slow_scale, mean_cal.slow_scale) == ("floor", "mean")
    t_daily, t_actual, t_mean = _intermittent(4000, seed=8)
    fast = t_mean[:, 0] > 0.3
    upper = mean_cal.totals(t_daily, np.full(4000, 28.0), t_mean)[:, list(mean_cal.levels).index(0.9)]
    flat = floor_cal.totals(t_daily, np.full(4000, 28.0))[:, list(floor_cal.levels).index(0.9)]
    total = t_actual.sum(axis=1)
    assert np.ptp(flat) == 0.0 and np.corrcoef(upper, t_mean[:, 0])[0, 1] > 0.95
    assert np.mean(total[fast] <= flat[fast]) < 0.75  # the premise: the floor's one bound misses the fast ones
    assert np.mean(total[fast] <= upper[fast]) > 0.85  # P90: about 90 % of totals at or under it
    cov = total_coverage(t_daily, t_actual, 28, BASE, mean_cal, t_mean)
    assert abs(cov - 0.8) < 0.05


def test_a_mean_scaled_calibration_needs_the_means_and_round_trips():
    daily, actual, mean = _intermittent(500, seed=9)
    cal = fit_totals_calibration(daily, actual, np.full(500, H), BASE, mean=mean)
    with pytest.raises(ValueError, match="pass the daily means"):
        cal.totals(daily, np.full(500, 7.0))
    with pytest.raises(ValueError, match="mean must be"):
        cal.totals(daily, np.full(500, 7.0), mean[:, :3])
    back = TotalsCalibration.from_dict(cal.to_dict())
    assert back.slow_scale == "mean"
    want = cal.totals(daily, np.full(500, 7.0), mean)
    np.testing.assert_allclose(back.totals(daily, np.full(500, 7.0), mean), want, atol=1e-5)  # scores: 6 decimals
    old = {k: v for k, v in cal.to_dict().items() if k != "slow_scale"}  # written before the field existed
    assert TotalsCalibration.from_dict(old).slow_scale == "floor"
