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
