"""Replenishment backtest of order-up-to levels over a test period (numpy only).

Periodic review (R, S): every `review_days` an order brings the stock position (on hand + on order) up
to S; it arrives `lead_days` later. The order placed at day t must cover the days t+1 .. t+L+R (until
the next order can arrive), so the cycle is in stock when that demand is <= S: the service level the
advice targets (P(no stock-out before the next delivery)). On hand on cycle day j of the R days after
the delivery is max(S - demand(t, t+L+j], 0) (backorders are counted, not carried: each cycle is
scored on its own, the textbook evaluation of (R, S)).

Methods compared (`order_up_to_levels`), each for every (series, decision day):
- the TCN's advice through serving's rule (serving/forecast/replenishment.py), with the calibrated
  totals (what /v1/forecast serves) and, for reference, with the summed daily quantiles it used before;
- the fixed rule: S = 1.2 x the forecast (the mean head's sum over L + R days), safety stock 20 %;
- a normal approximation from residuals: S = forecast + z_alpha * sigma * sqrt(L + R), sigma the
  series' standard deviation of daily residuals of the mean head on the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from serving.forecast.calibration import TotalsCalibration
from serving.forecast.replenishment import plan_replenishment

GOAL_IN_STOCK = 0.93
CALIBRATED = "TCN advice, calibrated totals (served)"
SUMMED = "TCN advice, summed daily quantiles (before)"
FIXED = "fixed rule: safety stock = 20 % of forecast"
NORMAL = "normal approximation from residuals"


@dataclass(frozen=True)
class Policy:
    review_days: int = 7
    lead_days: int = 7
    service_level: float = 0.95

    @property
    def cover_days(self) -> int:
        return self.review_days + self.lead_days


def order_up_to_levels(
    quantiles: np.ndarray,
    mean: np.ndarray,
    residual_sd: np.ndarray,
    levels: tuple[float, ...],
    calibration: TotalsCalibration,
    policy: Policy,
) -> dict[str, np.ndarray]:
    """quantiles [N, C, H, k] and mean [N, C, H]: the forecasts at each of C decision days; residual_sd [N]
    (units/day). -> method name -> S [N, C] (units)."""
    lead, review, alpha = policy.lead_days, policy.review_days, policy.service_level
    forecast = mean[..., : policy.cover_days].sum(axis=-1)
    z = NormalDist().inv_cdf(alpha)

    def advice(cal: TotalsCalibration | None) -> np.ndarray:
        plan = plan_replenishment(
            quantiles,
            0.0,
            lead,
            alpha,
            review_days=review,
            quantile_levels=levels,
            calibration=cal,
            mean_demand=mean if cal is not None else None,
        )
        return plan.order_up_to

    return {
        CALIBRATED: advice(calibration),
        SUMMED: advice(None),
        FIXED: 1.2 * forecast,
        NORMAL: forecast + z * residual_sd[:, None] * np.sqrt(policy.cover_days),
    }


def simulate(order_up_to: np.ndarray, demand: np.ndarray, decisions: np.ndarray, policy: Policy) -> dict[str, float]:
    """order_up_to [N, C] for decisions at test days `decisions` [C] (the order is placed at the end of
    that day; 0 = the last history day), demand [N, T] over the test days (NaN = not observed; such
    cycles are left out). -> in-stock rate of cycles, share of in-stock days, mean on-hand stock."""
    lead, cover = policy.lead_days, policy.cover_days
    if int(np.max(decisions)) + cover > demand.shape[1]:
        raise ValueError(f"a decision at day {int(np.max(decisions))} needs {cover} test days after it")
    days = np.asarray(decisions)[:, None] + np.arange(cover)[None, :]  # [C, L + R]
    d = demand[:, days]  # [N, C, L + R]
    ok = np.isfinite(d).all(axis=-1)  # [N, C]
    cum = np.cumsum(np.nan_to_num(d), axis=-1)
    left = order_up_to[..., None] - cum[..., lead:]  # [N, C, R]: stock after each covered day
    return {
        "in_stock_rate": float((left[..., -1] >= 0)[ok].mean()),
        "in_stock_days": float((left >= 0)[ok].mean()),
        "avg_stock": float(np.maximum(left, 0.0)[ok].mean()),
        "avg_demand": float(np.nan_to_num(d)[ok].mean()),
        "cycles": int(ok.sum()),
    }


def backtest(
    levels_by_method: dict[str, np.ndarray], demand: np.ndarray, decisions: np.ndarray, policy: Policy
) -> dict[str, dict[str, float]]:
    """Every method scored by `simulate`, plus whether it reaches GOAL_IN_STOCK and which of those holds
    the least stock ("best")."""
    out = {name: simulate(s, demand, decisions, policy) for name, s in levels_by_method.items()}
    reaching = [n for n, r in out.items() if r["in_stock_rate"] >= GOAL_IN_STOCK]
    best = min(reaching, key=lambda n: out[n]["avg_stock"]) if reaching else None
    for name, r in out.items():
        r["reaches_goal"] = name in reaching
        r["best"] = name == best
    return out
