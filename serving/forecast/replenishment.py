"""Order quantities from a quantile demand forecast (numpy only; serving never imports torch).

The rule (continuous review with an order-up-to level):

1. Lead-time demand. Per forecast day d the forecast gives quantiles q_d(l) at levels l (P10/P50/P90).
   Over the first `lead_time_days` (fractional days count pro rata) the median of the total is the sum
   of the daily medians, and the spread on each side of it is combined from the daily spreads
   s_d = q_d(l) - q_d(0.5):  S(l) = sign * sqrt((1 - rho) * sum(s_d^2) + rho * (sum s_d)^2).
   rho = 1 (default) is the plain sum of the daily quantiles: every day's error goes the same way
   (a wrong level hits the whole lead time), which is conservative; rho = 0 treats days as
   independent (spreads add in quadrature) and holds less stock.
2. Service-level quantile. The summed quantiles are interpolated in normal-score space
   (z = Phi^-1(l)): piecewise linear in z between the given levels, linear beyond the outermost two.
   With P10/P50/P90 that is a two-piece normal through the three points, so a 95 % service level
   extrapolates past P90 with the upper spread's own width, never a fixed percentage. Floored at 0.
3. reorder point R = Q_alpha(demand over the lead time);
   order-up-to S = Q_alpha(demand over lead time + review period) (what must be on hand or on
   order to cover until the next order could arrive). safety stock = R - median lead-time demand.
4. position = stock on hand + on order. status:
   "order_now" when position < R (below the reorder point: stock-out risk above 1 - alpha before a
   new order lands), order quantity = ceil(S - position);
   "watch" when R <= position < S (fine today, but expected to cross R within the review period);
   "ok" otherwise. Zero demand gives R = S = 0, hence "ok" and no order even with zero stock.
5. Calibrated totals (`calibration`, serving/forecast/calibration.py, fitted on a validation split in
   training): the lead-time and cover-period quantiles of steps 1-2 come from the calibrated totals at
   its finer levels instead of the combined daily spreads (`error_correlation` is then not used). The
   gateway passes the calibration export wrote; without one (older artifacts) the rule above applies.
6. Lead time + review beyond the forecast horizon: the days past the horizon repeat the last
   forecast week (keeps the weekday pattern; the mean of the horizon when it is shorter than a week)
   and the result says `extrapolated`.

Everything is vectorised over leading batch axes: quantiles [..., H, n_levels] with stock, lead time
and on-order broadcast against [...].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from serving.forecast.calibration import TotalsCalibration

DEFAULT_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)
STATUSES: tuple[str, ...] = ("order_now", "watch", "ok")
_EXTEND_PERIOD = 7  # days beyond the horizon repeat the last forecast week


@dataclass(frozen=True)
class ReplenishmentPlan:
    """Arrays of the batch shape [...] (0-d for one SKU)."""

    order_quantity: np.ndarray  # float64, whole units, >= 0
    status: np.ndarray  # str, one of STATUSES
    reorder_point: np.ndarray  # R = service-level quantile of lead-time demand
    order_up_to: np.ndarray  # S = service-level quantile of demand over lead time + review period
    lead_time_demand_median: np.ndarray
    safety_stock: np.ndarray  # R - median lead-time demand
    extrapolated: np.ndarray  # bool: lead time + review period reach past the forecast horizon
    note: str = ""  # says how the days past the horizon were filled, when any were


def _finite_array(value: object, name: str) -> np.ndarray:
    if type(value) is float or type(value) is int:  # one SKU's plain numbers: no numpy round trip (bool excluded)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
        return np.asarray(float(value))
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _validate_levels(levels: Sequence[float]) -> np.ndarray:
    try:
        key = tuple(float(x) for x in levels)
    except (TypeError, ValueError):
        key = None
    if key is None:
        return _checked_levels(levels)
    return _levels_of(key)


@lru_cache(maxsize=64)
def _levels_of(levels: tuple[float, ...]) -> np.ndarray:
    """The checked levels of one tuple, kept: every answer asks for the same few (read-only array)."""
    lv = _checked_levels(levels)
    lv.flags.writeable = False
    return lv


def _checked_levels(levels: Sequence[float]) -> np.ndarray:
    lv = _finite_array(levels, "quantile_levels")
    if lv.ndim != 1 or lv.size < 2 or np.any(lv <= 0) or np.any(lv >= 1) or np.any(np.diff(lv) <= 0):
        raise ValueError(f"quantile_levels must be >= 2 increasing values in (0, 1), got {lv.tolist()}")
    if not np.any(np.isclose(lv, 0.5)):
        raise ValueError("quantile_levels must include the median 0.5")
    return lv


@lru_cache(maxsize=64)
def _normal_scores(levels: tuple[float, ...]) -> np.ndarray:
    nd = NormalDist()
    z = np.array([nd.inv_cdf(lv) for lv in levels])
    z.flags.writeable = False
    return z


def _extend_horizon(q: np.ndarray, days: int) -> np.ndarray:
    """q [..., H, k] -> [..., days, k]: forecast days first, then the last week repeated."""
    h = q.shape[-2]
    if days <= h:
        return q[..., :days, :]
    if h >= _EXTEND_PERIOD:
        tail = q[..., h - _EXTEND_PERIOD :, :]
        idx = np.arange(days - h) % _EXTEND_PERIOD
        extra = tail[..., idx, :]
    else:
        extra = np.repeat(q.mean(axis=-2, keepdims=True), days - h, axis=-2)
    return np.concatenate([q, extra], axis=-2)


def period_demand_quantiles(
    quantiles: np.ndarray, days: np.ndarray, levels: np.ndarray, rho: float, n_days: int
) -> np.ndarray:
    """Quantiles of total demand over the first `days` [...] (fractional) forecast days -> [..., k].

    quantiles: [..., n_days, k] (already extended to cover max(days)).
    """
    median_idx = int(np.argmin(np.abs(levels - 0.5)))
    # Weight of each day: 1 for whole days inside the period, the fraction for the partial one.
    weight = np.clip(days[..., None] - np.arange(n_days), 0.0, 1.0)  # [..., n_days]
    med = quantiles[..., median_idx]  # [..., n_days]
    spread = (quantiles - med[..., None]) * weight[..., None]  # [..., n_days, k], signed
    lin = spread.sum(axis=-2)
    quad = np.sqrt((spread**2).sum(axis=-2))
    combined = np.sign(lin) * np.sqrt((1.0 - rho) * quad**2 + rho * lin**2)
    return (med * weight).sum(axis=-1)[..., None] + combined


@lru_cache(maxsize=64)
def _same_levels(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b))


def interpolate_quantile(values: np.ndarray, levels: np.ndarray, alpha: float) -> np.ndarray:
    """Quantile at `alpha` from values [..., k] at increasing `levels` [k], linear in normal scores."""
    j, frac = _segment(tuple(np.asarray(levels, dtype=np.float64).tolist()), float(alpha))
    lo, hi = values[..., j], values[..., j + 1]
    return lo + (hi - lo) * frac


@lru_cache(maxsize=256)
def _segment(levels: tuple[float, ...], alpha: float) -> tuple[int, float]:
    """(j, fraction of the way from levels[j] to levels[j + 1]) of alpha in normal scores; kept, since every
    answer asks the same few (levels, service level) pairs."""
    z = _normal_scores(levels)
    za = NormalDist().inv_cdf(alpha)
    # Segment: the pair of levels around alpha, or the outermost pair when alpha lies beyond them.
    j = int(np.clip(np.searchsorted(z, za) - 1, 0, len(z) - 2))
    return j, float((za - z[j]) / (z[j + 1] - z[j]))


def _broadcast_inputs(batch: tuple[int, ...], *arrays: np.ndarray) -> list[np.ndarray]:
    try:
        return np.broadcast_arrays(*(np.broadcast_to(a, batch) for a in arrays))
    except ValueError:
        raise ValueError(
            f"stock_on_hand, on_order, lead_time_days and review_days must broadcast to the batch shape {batch}"
        ) from None


def plan_replenishment(
    quantiles: np.ndarray,
    stock_on_hand: float | np.ndarray,
    lead_time_days: float | np.ndarray,
    service_level: float,
    *,
    review_days: float = 7.0,
    on_order: float | np.ndarray = 0.0,
    quantile_levels: Sequence[float] = DEFAULT_LEVELS,
    error_correlation: float = 1.0,
    calibration: TotalsCalibration | None = None,
    mean_demand: np.ndarray | None = None,
) -> ReplenishmentPlan:
    """Order quantity and status for one SKU or a batch (rule in the module docstring).

    quantiles: [..., H, n_levels] daily demand quantiles (units), ordered along the last axis.
    stock_on_hand, on_order: >= 0, broadcast to [...]; lead_time_days, review_days: >= 0 days.
    service_level: target probability of no stock-out before the next delivery, in (0, 1).
    error_correlation: rho in [0, 1], how daily forecast errors combine (1 = sum the quantiles).
    calibration: calibrated period totals (rule 5); its base levels must be `quantile_levels`.
    mean_demand: [..., H] the daily mean forecast (units), which a calibration that scales slow movers by
    their mean needs (TotalsCalibration.slow_scale "mean"); not used otherwise.
    Raises ValueError naming the argument for invalid input.
    """
    levels = _validate_levels(quantile_levels)
    q = _finite_array(quantiles, "quantiles")
    if q.ndim < 2 or q.shape[-1] != levels.size or q.shape[-2] < 1:
        raise ValueError(f"quantiles must have shape [..., horizon >= 1, {levels.size}], got {q.shape}")
    if np.any(q < 0):
        raise ValueError("quantiles must be >= 0 (demand cannot be negative)")
    if np.any(np.diff(q, axis=-1) < 0):
        raise ValueError("quantiles must be ordered along the last axis (P10 <= P50 <= P90)")
    stock = _finite_array(stock_on_hand, "stock_on_hand")
    pending = _finite_array(on_order, "on_order")
    lead = _finite_array(lead_time_days, "lead_time_days")
    review = _finite_array(review_days, "review_days")
    for arr, name in (
        (stock, "stock_on_hand"),
        (pending, "on_order"),
        (lead, "lead_time_days"),
        (review, "review_days"),
    ):
        if (arr < 0).any():
            raise ValueError(f"{name} must be >= 0")
    alpha = _finite_array(service_level, "service_level")
    if alpha.ndim != 0 or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"service_level must be one number strictly between 0 and 1, got {service_level!r}")
    rho = _finite_array(error_correlation, "error_correlation")
    if rho.ndim != 0 or not 0.0 <= float(rho) <= 1.0:
        raise ValueError(f"error_correlation must be one number in [0, 1], got {error_correlation!r}")
    if calibration is not None and not _same_levels(tuple(calibration.base_levels), tuple(levels.tolist())):
        raise ValueError(
            f"the calibration is fitted on levels {list(calibration.base_levels)}, the quantiles have {levels.tolist()}"
        )
    batch = q.shape[:-2]
    if batch or stock.ndim or pending.ndim or lead.ndim or review.ndim:  # one SKU's four numbers need nothing
        stock, pending, lead, review = _broadcast_inputs(batch, stock, pending, lead, review)

    horizon = q.shape[-2]
    n_days = max(int(np.ceil((lead + review).max(initial=0.0))), 1)
    daily = _extend_horizon(q, n_days)
    extrapolated = (lead + review) > horizon
    if calibration is None:
        lt_q = period_demand_quantiles(daily, lead, levels, float(rho), n_days)
        cover_q = period_demand_quantiles(daily, lead + review, levels, float(rho), n_days)
        total_levels = levels
    else:
        # Both periods in one call: [2, ...] (the per-call cost is most of it for one SKU).
        mean2 = None
        if mean_demand is not None:
            m = _finite_array(mean_demand, "mean_demand")
            if m.shape != q.shape[:-1] or np.any(m < 0):
                raise ValueError(f"mean_demand must be >= 0 with shape {list(q.shape[:-1])}, got {list(m.shape)}")
            m = _extend_horizon(m[..., None], n_days)[..., 0]
            mean2 = np.broadcast_to(m, (2, *m.shape))
        lt_q, cover_q = calibration.totals(
            np.broadcast_to(daily, (2, *daily.shape)), np.stack([lead, lead + review]), mean2
        )
        total_levels = np.asarray(calibration.levels, dtype=np.float64)
    reorder_point = np.maximum(interpolate_quantile(lt_q, total_levels, float(alpha)), 0.0)
    order_up_to = np.maximum(interpolate_quantile(cover_q, total_levels, float(alpha)), reorder_point)
    median_lt = lt_q[..., int(np.argmin(np.abs(total_levels - 0.5)))]

    position = stock + pending
    status = np.where(position < reorder_point, "order_now", np.where(position < order_up_to, "watch", "ok"))
    # Whole units; float noise (1e-12 over a whole number) must not add a unit; an order is at least 1.
    order_qty = np.where(status == "order_now", np.maximum(np.ceil(order_up_to - position - 1e-9), 1.0), 0.0)
    note = (
        f"lead time + review period ({n_days} days) exceed the {horizon}-day forecast; days past the horizon "
        "repeat the last forecast week"
        if extrapolated.any()
        else ""
    )
    return ReplenishmentPlan(
        order_quantity=order_qty,
        status=status,
        reorder_point=reorder_point,
        order_up_to=order_up_to,
        lead_time_demand_median=median_lt,
        safety_stock=reorder_point - median_lt,
        extrapolated=extrapolated,
        note=note,
    )
