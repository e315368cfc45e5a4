"""Replenishment rule: service-level quantiles from the forecast, statuses and every edge case."""

from statistics import NormalDist

import numpy as np
import pytest

from serving.forecast.replenishment import interpolate_quantile, plan_replenishment


def _flat(h: int = 28, p10: float = 2.0, p50: float = 4.0, p90: float = 7.0) -> np.ndarray:
    return np.tile([p10, p50, p90], (h, 1))


def test_summed_quantiles_give_the_reorder_point_at_p90():
    plan = plan_replenishment(_flat(), stock_on_hand=0.0, lead_time_days=5, service_level=0.9, review_days=2)
    assert plan.reorder_point == pytest.approx(5 * 7.0)  # rho = 1: sum of daily P90
    assert plan.order_up_to == pytest.approx(7 * 7.0)
    assert plan.lead_time_demand_median == pytest.approx(20.0)
    assert plan.safety_stock == pytest.approx(15.0)
    assert plan.status == "order_now" and plan.order_quantity == 49.0
    assert not plan.extrapolated


def test_higher_service_level_extrapolates_past_p90_with_the_upper_spread():
    levels = np.array([0.1, 0.5, 0.9])
    vals = np.array([10.0, 20.0, 35.0])
    z = NormalDist().inv_cdf
    assert interpolate_quantile(vals, levels, 0.95) == pytest.approx(20 + 15 * z(0.95) / z(0.9))
    assert interpolate_quantile(vals, levels, 0.3) == pytest.approx(20 - 10 * z(0.7) / z(0.9))
    assert interpolate_quantile(vals, levels, 0.9) == pytest.approx(35.0)
    lo = plan_replenishment(_flat(), 0.0, 7, 0.9)
    hi = plan_replenishment(_flat(), 0.0, 7, 0.98)
    assert hi.reorder_point > lo.reorder_point and hi.safety_stock > lo.safety_stock


def test_independent_errors_hold_less_safety_stock():
    dep = plan_replenishment(_flat(), 0.0, 9, 0.9, error_correlation=1.0)
    ind = plan_replenishment(_flat(), 0.0, 9, 0.9, error_correlation=0.0)
    assert ind.safety_stock == pytest.approx(np.sqrt(9) * 3.0)  # spreads add in quadrature
    assert dep.safety_stock == pytest.approx(9 * 3.0)


def test_statuses_follow_the_position():
    q = _flat()
    # R = 5 * 7 = 35, S = (5 + 7) * 7 = 84
    stock = np.array([0.0, 34.0, 35.0, 83.0, 84.0, 500.0])
    plan = plan_replenishment(np.broadcast_to(q, (6, *q.shape)), stock, 5, 0.9)
    assert plan.status.tolist() == ["order_now", "order_now", "watch", "watch", "ok", "ok"]
    assert plan.order_quantity.tolist() == [84.0, 50.0, 0.0, 0.0, 0.0, 0.0]
    # Stock already on order counts towards the position.
    assert plan_replenishment(q, 10.0, 5, 0.9, on_order=30.0).status == "watch"


def test_zero_demand_needs_no_order_even_with_zero_stock():
    plan = plan_replenishment(np.zeros((28, 3)), 0.0, 14, 0.95)
    assert plan.status == "ok" and plan.order_quantity == 0.0 and plan.reorder_point == 0.0


def test_zero_stock_with_demand_orders_up_to_cover():
    plan = plan_replenishment(_flat(), 0.0, 3, 0.5, review_days=4)
    assert plan.status == "order_now" and plan.order_quantity == 7 * 4.0  # median over 7 days


def test_fractional_lead_time_counts_pro_rata():
    plan = plan_replenishment(_flat(), 0.0, 2.5, 0.5)
    assert plan.reorder_point == pytest.approx(10.0)


def test_lead_time_past_the_horizon_repeats_the_last_week_and_says_so():
    q = np.zeros((14, 3))
    q[7:] = [[1.0, 2.0, 3.0]] * 7  # week 2 only; week 1 is zero
    plan = plan_replenishment(q, 0.0, 40, 0.5, review_days=0)
    assert plan.extrapolated and "repeat the last forecast week" in plan.note
    assert plan.reorder_point == pytest.approx(7 * 2.0 + 26 * 2.0)  # 26 extrapolated days at the last week's P50
    short = plan_replenishment(q, 0.0, 3, 0.5, review_days=0)
    assert not short.extrapolated and short.note == ""


def test_short_horizon_extends_with_its_mean():
    q = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    plan = plan_replenishment(q, 0.0, 4, 0.5, review_days=0)
    assert plan.reorder_point == pytest.approx(2 + 4 + 3 + 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stock_on_hand": -1.0}, "stock_on_hand"),
        ({"stock_on_hand": np.nan}, "stock_on_hand"),
        ({"lead_time_days": -2}, "lead_time_days"),
        ({"lead_time_days": np.inf}, "lead_time_days"),
        ({"service_level": 1.0}, "service_level"),
        ({"service_level": 0.0}, "service_level"),
        ({"service_level": "high"}, "service_level"),
        ({"review_days": -1}, "review_days"),
        ({"on_order": -3}, "on_order"),
        ({"error_correlation": 2.0}, "error_correlation"),
        ({"quantiles": _flat()[:, ::-1]}, "ordered"),
        ({"quantiles": -_flat()}, ">= 0"),
        ({"quantiles": np.full((28, 3), np.nan)}, "quantiles must be finite"),
        ({"quantiles": np.zeros((28, 2))}, "shape"),
        ({"quantiles": np.zeros(3)}, "shape"),
        ({"quantile_levels": (0.1, 0.9, 0.5)}, "quantile_levels"),
        ({"quantile_levels": (0.1, 0.4, 0.9)}, "median"),
        ({"stock_on_hand": np.zeros(3)}, "broadcast"),
    ],
)
def test_invalid_input_is_rejected_naming_the_argument(kwargs, match):
    args = {"quantiles": _flat(), "stock_on_hand": 5.0, "lead_time_days": 3, "service_level": 0.9} | kwargs
    with pytest.raises(ValueError, match=match):
        plan_replenishment(**args)
