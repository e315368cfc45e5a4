"""Replenishment backtest: cycle scoring by hand, the methods' order-up-to levels, the goal's pick."""

import numpy as np
import pytest

from serving.forecast.calibration import TotalsCalibration
from serving.forecast.replenishment import plan_replenishment
from training.forecast.backtest import (
    CALIBRATED,
    FIXED,
    NORMAL,
    SUMMED,
    Policy,
    backtest,
    order_up_to_levels,
    simulate,
)

POLICY = Policy(review_days=2, lead_days=2, service_level=0.95)


def test_cycles_are_scored_by_hand():
    demand = np.array([[1.0, 1, 1, 1, 5, 5, 5, 5]])
    r = simulate(np.array([[4.0, 15.0]]), demand, np.array([0, 4]), POLICY)
    # Cycle 1: 4 units over 4 days against S = 4 -> in stock, 1 then 0 left. Cycle 2: 20 against 15 -> out.
    assert r["in_stock_rate"] == 0.5 and r["in_stock_days"] == 0.75
    assert r["avg_stock"] == pytest.approx(0.25) and r["avg_demand"] == pytest.approx(3.0) and r["cycles"] == 2
    with pytest.raises(ValueError, match="needs 4 test days"):
        simulate(np.array([[4.0, 15.0]]), demand, np.array([0, 5]), POLICY)


def test_unobserved_cycles_are_left_out():
    demand = np.array([[1.0, 1, 1, 1], [np.nan, 1, 1, 1]])
    r = simulate(np.array([[3.0], [100.0]]), demand, np.array([0]), POLICY)
    assert r["cycles"] == 1 and r["in_stock_rate"] == 0.0


def test_methods_order_up_to_levels():
    q = np.tile([[2.0, 5.0, 9.0]], (3, 2, 28, 1))  # [N=3, C=2, H, k]
    mean = np.full((3, 2, 28), 5.0)
    sd = np.array([0.0, 1.0, 2.0])
    cal = TotalsCalibration((0.5, 0.95), tuple(range(1, 29)), np.tile([0.0, 2.0], (28, 1)), (0.1, 0.5, 0.9))
    s = order_up_to_levels(q, mean, sd, (0.1, 0.5, 0.9), cal, POLICY)
    np.testing.assert_allclose(s[FIXED], 1.2 * 20.0)
    np.testing.assert_allclose(s[NORMAL][:, 0], 20.0 + 1.6449 * sd * 2.0, atol=1e-3)
    np.testing.assert_allclose(s[CALIBRATED], 20.0 + 2.0 * 16.0)  # median 4 x 5, P90 spread 4 x 4, score 2
    want = plan_replenishment(q, 0.0, 2, 0.95, review_days=2).order_up_to
    np.testing.assert_allclose(s[SUMMED], want)


def test_the_goal_picks_the_least_stock_among_methods_in_stock_often_enough():
    demand = np.tile(np.arange(1.0, 5.0), (50, 1))  # 10 units per cycle
    levels = {"tight": np.full((50, 1), 9.0), "enough": np.full((50, 1), 10.0), "lavish": np.full((50, 1), 30.0)}
    r = backtest(levels, demand, np.array([0]), POLICY)
    assert [n for n in r if r[n]["reaches_goal"]] == ["enough", "lavish"]
    assert r["enough"]["best"] and not r["lavish"]["best"] and not r["tight"]["best"]
