"""The pieces under /v1/price: guard rails -> range and grid, outcomes with the stock cap, the elasticity fit, and
the plans model's fit to the forecaster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.contracts.model_specs import TCN, TCN_MAX_PLANS, TCN_PLANS
from serving.price import capability
from serving.price.advice import best_index, elasticity, outcomes
from serving.price.rails import NoFeasiblePrice, candidate_prices, price_range, probe_prices
from serving.price.schemas import MAX_CANDIDATES
from serving.runtime.backends.base import ModelInfo, TensorInfo
from serving.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def test_range_is_the_tightest_rail_and_names_it():
    r = price_range(10.0, 6.0, max_change_pct=20)
    assert (r.low, r.high, r.low_rule, r.high_rule) == (8.0, 12.0, "max_change_pct", "max_change_pct")
    r = price_range(10.0, 6.0, max_change_pct=20, min_margin_pct=50, max_price=11.0)
    assert (r.low, r.high, r.low_rule, r.high_rule) == (9.0, 11.0, "min_margin_pct", "max_price")
    r = price_range(10.0, 0.0, max_change_pct=50, min_price=9.5)
    assert (r.low, r.low_rule) == (9.5, "min_price")


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"min_margin_pct": 110}, "min_margin_pct"),  # floor 12.6 above the +20 % ceiling
        ({"min_price": 13.0}, "min_price"),
        ({"max_price": 7.0}, "max_price"),  # below the -20 % floor
    ],
)
def test_rails_that_close_the_range_are_named(kw, field):
    with pytest.raises(NoFeasiblePrice) as e:
        price_range(10.0, 6.0, max_change_pct=20, **kw)
    assert e.value.field == field


def test_grid_is_geometric_in_cents_inside_the_rails():
    r = price_range(9.99, 5.0, max_change_pct=15)
    grid = candidate_prices(r, 21)
    assert len(grid) == 21 and np.all(np.diff(grid) > 0)
    assert grid[0] >= r.low - 1e-9 and grid[-1] <= r.high + 1e-9
    np.testing.assert_allclose(grid * 100, np.round(grid * 100), atol=1e-6)
    steps = grid[1:] / grid[:-1]
    assert steps.max() / steps.min() < 1.01  # equal steps in log price, up to cent rounding
    low, high = probe_prices(grid)
    assert low < grid[0] and high > grid[-1]
    narrow = price_range(10.0, 0.0, max_change_pct=10, min_price=10.0, max_price=10.004)
    assert candidate_prices(narrow, 21).tolist() == [10.0]


def _demand(prices: np.ndarray, e: float, per_day: float = 5.0, days: int = 28) -> tuple[np.ndarray, np.ndarray]:
    mean = per_day * (prices / prices[0]) ** e
    daily = np.repeat(mean[:, None], days, axis=1)
    return daily[..., None] * np.array([0.6, 1.0, 1.4]), daily


def test_outcomes_sum_the_horizon_and_cap_at_stock():
    prices = np.array([5.0, 6.0, 7.0])
    q, mean = _demand(prices, -2.0)
    free = outcomes(prices, q, mean, (0.1, 0.5, 0.9), 14, 2.0)
    np.testing.assert_allclose(free.units, mean[:, :14].sum(axis=1))
    np.testing.assert_allclose(free.p50, q[:, :14, 1].sum(axis=1))
    np.testing.assert_allclose(free.profit, (prices - 2.0) * free.units)
    capped = outcomes(prices, q, mean, (0.1, 0.5, 0.9), 14, 2.0, stock=40.0)
    assert np.all(capped.units <= 40.0) and np.all(capped.units <= free.units)
    assert np.all(capped.p90 <= 40.0) and capped.units[0] < free.units[0]
    plenty = outcomes(prices, q, mean, (0.1, 0.5, 0.9), 14, 2.0, stock=1e6)
    np.testing.assert_allclose(plenty.units, free.units)
    none = outcomes(prices, q, mean, (0.1, 0.5, 0.9), 14, 2.0, stock=0.0)
    assert np.all(none.units == 0) and np.all(none.profit == 0)


def test_no_mean_head_uses_the_quantiles():
    prices = np.array([5.0, 6.0])
    q, mean = _demand(prices, -1.0)
    res = outcomes(prices, q, None, (0.1, 0.5, 0.9), 28, 1.0)
    np.testing.assert_allclose(res.units, mean.sum(axis=1), rtol=0.02)  # symmetric spread: mean ~ median


def test_elasticity_and_ties():
    prices = np.geomspace(4.0, 6.0, 9)
    assert elasticity(prices, 3.0 * prices**-1.7) == pytest.approx(-1.7)
    assert elasticity(np.array([5.0, 5.0]), np.array([1.0, 2.0])) is None
    values = np.array([1.0, 3.0, 3.0, 2.0])
    assert best_index(values, np.array([4.0, 5.0, 6.0, 7.0]), current=6.2) == 2  # the tie nearer the current price


def test_the_price_pipeline_imports_no_transport():
    code = (
        "import sys, serving.price.pipeline, serving.price.capability;"
        "print([m for m in ('fastapi', 'starlette', 'uvicorn', 'serving.proto.storefront_pb2') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _info(spec, config) -> ModelInfo:
    r = spec.resolve(config)
    tensors = [tuple(TensorInfo(t.name, t.dtype, t.dims) for t in ts) for ts in (r.inputs, r.outputs)]
    return ModelInfo(spec.name, 1, tensors[0], tensors[1], spec.max_batch_size)


def test_the_plans_model_must_fit_the_forecaster():
    assert MAX_CANDIDATES + 3 <= TCN_MAX_PLANS  # the largest question fits one row of the plans model
    config = {"n_past": 5, "n_future": 3, "context_days": 20, "horizon": 7, "n_stores": 2, "n_categories": 2}
    config["quantiles"] = [0.1, 0.5, 0.9]
    settings = Settings(forecast_model="tcn")
    models = {"tcn": _info(TCN, config), "tcn_plans": _info(TCN_PLANS, config)}
    assert capability.check({}, models, settings) == []
    assert capability.CAPABILITY.models(settings, models) == ("tcn", "tcn_plans")
    other = _info(TCN_PLANS, {**config, "horizon": 14})
    problems = capability.check({}, {**models, "tcn_plans": other}, settings)
    assert problems == ["price: tcn_plans does not fit tcn (future_features, mean, quantiles)"]
    assert capability.CAPABILITY.models(settings, {"tcn": models["tcn"]}) == ("tcn",)
