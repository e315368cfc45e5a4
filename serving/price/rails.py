"""Guard rails -> the price range a shop allows, and the candidate prices inside it (numpy only).

The allowed range is the intersection of every rail: [min_price, max_price], current price +-
max_change_pct, and the margin floor unit_cost * (1 + min_margin_pct / 100). Each end remembers which
rail set it, so an answer at that end can name the rail that binds. Candidates are a geometric grid
(equal steps in log price: the demand model is log-log, so equal steps mean equal changes in demand),
rounded to cents, plus one probe just beyond each end: when a probe beats the best candidate, the
rail at that end really binds (the objective would improve past it), not merely touches.

Shared by the gateway's /v1/price and the offline pricing evaluation (training/pricing), so the
figures measure the rule that is served.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CENT = 0.01


class NoFeasiblePrice(ValueError):
    """The rails leave no price; `field` is the request field that closed the range."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PriceRange:
    low: float
    high: float
    low_rule: str  # the request field that set `low` (min_price, max_change_pct or min_margin_pct)
    high_rule: str  # ... that set `high` (max_price or max_change_pct)


def price_range(
    current: float,
    unit_cost: float,
    *,
    max_change_pct: float,
    min_margin_pct: float = 0.0,
    min_price: float | None = None,
    max_price: float | None = None,
) -> PriceRange:
    """The allowed range; raises NoFeasiblePrice naming the rail that closes it."""
    lows = {"max_change_pct": current * (1.0 - max_change_pct / 100.0), "min_margin_pct": 0.0}
    if unit_cost > 0:
        lows["min_margin_pct"] = unit_cost * (1.0 + min_margin_pct / 100.0)
    if min_price is not None:
        lows["min_price"] = min_price
    highs = {"max_change_pct": current * (1.0 + max_change_pct / 100.0)}
    if max_price is not None:
        highs["max_price"] = max_price
    low_rule = max(lows, key=lambda k: lows[k])
    high_rule = min(highs, key=lambda k: highs[k])
    low, high = max(lows[low_rule], CENT), highs[high_rule]
    if low > high + 1e-9:
        field = low_rule if low_rule != "max_change_pct" else high_rule
        raise NoFeasiblePrice(
            field,
            f"the guard rails leave no price: {low_rule} needs >= {low:.2f}, {high_rule} allows <= {high:.2f} "
            f"(current price {current:.2f})",
        )
    return PriceRange(low, max(high, low), low_rule, high_rule)


def candidate_prices(rng: PriceRange, n: int) -> np.ndarray:
    """n (or fewer, after rounding to cents) increasing prices from low to high, both ends included."""
    if rng.high - rng.low < CENT:
        return np.array([rng.low])
    grid = np.geomspace(rng.low, rng.high, n)
    # Cents, never past a rail: round inwards at the ends.
    grid = np.round(grid / CENT) * CENT
    grid[0] = np.ceil(rng.low / CENT - 1e-9) * CENT
    grid[-1] = np.floor(rng.high / CENT + 1e-9) * CENT
    grid = np.unique(np.clip(grid, rng.low, rng.high))
    return grid if grid.size else np.array([rng.low])


def probe_prices(grid: np.ndarray) -> tuple[float, float]:
    """One price a grid step below the lowest candidate and one above the highest (at least 1 %)."""
    step = float(np.exp(np.mean(np.diff(np.log(grid))))) if grid.size > 1 else 1.01
    step = max(step, 1.01)
    return float(grid[0] / step), float(grid[-1] * step)
