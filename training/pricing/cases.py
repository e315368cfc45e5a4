"""The pricing test: one case per generated series, priced at the last history day for the 28 test days.

Each case has the shop's current (regular) price, a unit cost, the guard rails' allowed range (the same
rule as /v1/price: serving/price/rails.py) and the true profit at any price over the test days, from the
generator's own demand model (training.data.sales.price_truth): profit(p) = (p - cost) * sum_t
E_t[units at p without promotion]. The oracle price maximises that within the rails; with constant
elasticity e it is cost * e / (1 + e) clipped to the range (the ceiling when demand is inelastic).

Unit costs are not in the data: each series gets cost = current price * U(cost_low, cost_high) from a
seeded draw, the usual retail range of a 20-60 % gross margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.price.rails import PriceRange, price_range
from training.data.sales import PriceTruth
from training.data.schema import SalesPanel


@dataclass(frozen=True)
class Cases:
    series: np.ndarray  # [S] panel rows
    current: np.ndarray  # [S] current regular price
    cost: np.ndarray  # [S]
    ranges: list[PriceRange]
    base_units: np.ndarray  # [S, D] true expected units per test day at the current price, no promotion
    elasticity: np.ndarray  # [S] the generator's

    @property
    def low(self) -> np.ndarray:
        return np.array([r.low for r in self.ranges])

    @property
    def high(self) -> np.ndarray:
        return np.array([r.high for r in self.ranges])

    def true_units(self, price: np.ndarray) -> np.ndarray:
        """price [S] or [S, K] -> true expected units over the test days, same shape."""
        p = np.asarray(price, dtype=np.float64)
        ratio = p / (self.current if p.ndim == 1 else self.current[:, None])
        e = self.elasticity if p.ndim == 1 else self.elasticity[:, None]
        total = self.base_units.sum(axis=1)
        return (total if p.ndim == 1 else total[:, None]) * ratio**e

    def true_profit(self, price: np.ndarray) -> np.ndarray:
        cost = self.cost if np.ndim(price) == 1 else self.cost[:, None]
        return (np.asarray(price) - cost) * self.true_units(price)

    def oracle_price(self) -> np.ndarray:
        e = self.elasticity
        inner = np.where(e < -1.0, self.cost * e / np.minimum(1.0 + e, -1e-9), np.inf)
        return np.clip(inner, self.low, self.high)


def current_prices(price: np.ndarray, promo: np.ndarray) -> np.ndarray:
    """Per row: the last finite price of a day without promotion (else the last finite price): the rule of
    serving/price/features.py. price, promo [S, T] -> [S]."""
    known = np.isfinite(price) & (price > 0)
    regular = known & ~(promo > 0)
    use = np.where(regular.any(axis=1, keepdims=True), regular, known)
    last = use.shape[1] - 1 - np.argmax(use[:, ::-1], axis=1)
    return price[np.arange(len(price)), last]


def build_cases(
    history: SalesPanel,
    test: SalesPanel,
    truth: PriceTruth,
    *,
    max_change_pct: float,
    min_margin_pct: float,
    cost_range: tuple[float, float] = (0.4, 0.8),
    seed: int = 0,
) -> Cases:
    """Every series with a known price and true demand on every test day."""
    assert test.expected is not None, "the pricing test needs generated data (its true expected demand)"
    current = current_prices(history.price.astype(np.float64), history.promo)
    ok = np.isfinite(current) & np.isfinite(test.expected).all(axis=1) & np.isfinite(history.units[:, -1])
    series = np.flatnonzero(ok)
    rng = np.random.default_rng(seed)
    cost = np.round(current * rng.uniform(*cost_range, history.n_series), 2)
    base = truth.expected_at(
        test.expected.astype(np.float64), test.price.astype(np.float64), test.promo, current[:, None]
    )
    ranges = [
        price_range(float(current[s]), float(cost[s]), max_change_pct=max_change_pct, min_margin_pct=min_margin_pct)
        for s in series
    ]
    return Cases(series, current[series], cost[series], ranges, base[series], truth.elasticity[series])
