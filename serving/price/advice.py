"""From the forecaster's demand at each candidate price to units, revenue, profit and the best price (numpy).

Per candidate (one TCN row): units over the first `horizon_days` forecast days. The expected units are
the sum of the mean head (the quantile quadrature below when a model has no mean); P10/P50/P90 of the
period total combine the daily quantiles as replenishment does (serving/forecast/replenishment.py,
errors fully correlated across days). With `stock`, what can be sold is min(demand, stock): its
expectation is the expected demand minus the expected overflow E[(D - stock)+], integrated over the
period's two-piece-normal quantile function; the quantiles are capped at the stock.

The estimated elasticity is the least-squares slope of log expected demand (uncapped) on log price
over the candidates: the model's own price response over the searched range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.forecast.replenishment import interpolate_quantile, period_demand_quantiles

SHOWN = (0.1, 0.5, 0.9)
OBJECTIVES = ("profit", "revenue")
_QUADRATURE = (np.arange(40) + 0.5) / 40  # levels for E[min(D, stock)]


@dataclass(frozen=True)
class Outcomes:
    """Arrays [B], one entry per candidate price."""

    price: np.ndarray
    units: np.ndarray  # expected units sold (capped by stock when given)
    demand: np.ndarray  # expected demand, uncapped
    p10: np.ndarray
    p50: np.ndarray
    p90: np.ndarray
    revenue: np.ndarray
    profit: np.ndarray

    def objective(self, name: str) -> np.ndarray:
        return self.profit if name == "profit" else self.revenue


def outcomes(
    prices: np.ndarray,
    quantiles: np.ndarray,
    mean: np.ndarray | None,
    levels: Sequence[float],
    horizon_days: int,
    unit_cost: float,
    stock: float | None = None,
) -> Outcomes:
    """prices [B]; quantiles [B, H, k] and mean [B, H] (units/day) at those prices."""
    lv = np.asarray(levels, dtype=np.float64)
    q = np.maximum(np.asarray(quantiles, dtype=np.float64)[:, :horizon_days], 0.0)
    b = q.shape[0]
    total = period_demand_quantiles(q, np.full(b, float(horizon_days)), lv, 1.0, horizon_days)  # [B, k]
    total = np.maximum(np.maximum.accumulate(total, axis=-1), 0.0)
    curve = np.maximum(np.stack([interpolate_quantile(total, lv, a) for a in _QUADRATURE], axis=-1), 0.0)
    demand = (
        np.asarray(mean, dtype=np.float64)[:, :horizon_days].sum(axis=1) if mean is not None else curve.mean(axis=1)
    )
    shown = total[:, [int(np.argmin(np.abs(lv - s))) for s in SHOWN]]
    units = demand
    if stock is not None:
        overflow = np.maximum(curve - stock, 0.0).mean(axis=1)
        units = np.clip(demand - overflow, 0.0, stock)
        shown = np.minimum(shown, stock)
    p = np.asarray(prices, dtype=np.float64)
    return Outcomes(
        price=p,
        units=units,
        demand=demand,
        p10=shown[:, 0],
        p50=shown[:, 1],
        p90=shown[:, 2],
        revenue=p * units,
        profit=(p - unit_cost) * units,
    )


def best_index(values: np.ndarray, prices: np.ndarray, current: float) -> int:
    """Index of the highest value; among (near) ties the price closest to the current one (fewer changes)."""
    top = float(np.max(values))
    tied = np.flatnonzero(values >= top - 1e-9 * max(abs(top), 1.0))
    return int(tied[np.argmin(np.abs(np.log(prices[tied] / current)))])


def elasticity(prices: np.ndarray, demand: np.ndarray) -> float | None:
    """Slope of log demand on log price; None with fewer than two distinct prices or no demand."""
    ok = (prices > 0) & (demand > 0)
    x, y = np.log(prices[ok]), np.log(demand[ok])
    if x.size < 2 or np.ptp(x) < 1e-9:
        return None
    x = x - x.mean()
    return float(np.dot(x, y - y.mean()) / np.dot(x, x))
