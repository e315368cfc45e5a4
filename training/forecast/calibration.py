"""Fit the period-total calibration (serving/forecast/calibration.py) on validation forecasts.

Input: daily quantile forecasts made at one or more validation origins, and the sales that followed
them. Every (series, origin) with L observed days after the origin gives one L-day total for each
L = 1..H, so the short periods get more totals (several origins) than the 28-day one (the first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.forecast.calibration import CALIBRATED_LEVELS, GROUPS, TotalsCalibration, base_totals, group_of, scores
from serving.forecast.replenishment import period_demand_quantiles
from training.report import format_table

MIN_TOTALS = 10  # validation totals a period length needs before its scores mean anything


def fit_totals_calibration(
    daily: np.ndarray,
    actual: np.ndarray,
    usable_days: np.ndarray,
    base_levels: Sequence[float],
    levels: Sequence[float] = CALIBRATED_LEVELS,
    mean: np.ndarray | None = None,
) -> TotalsCalibration:
    """daily [S, H, k] forecast quantiles per sample (series x origin), actual [S, H] the sales after
    each origin (NaN = not observed), usable_days [S] how many of them lie inside the validation split;
    mean [S, H] the daily mean forecasts (given: slow movers are scaled by them, slow_scale "mean").

    A total of L days counts when L <= usable_days and all its L days are observed. Scores are fitted per
    group (serving/forecast/calibration.py GROUPS); a group with fewer than MIN_TOTALS totals of some L
    takes the pooled scores. Raises ValueError when some L has fewer than MIN_TOTALS totals in all."""
    daily, actual = np.asarray(daily, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    s, h, _ = daily.shape
    if actual.shape != (s, h) or np.shape(usable_days) != (s,):
        raise ValueError(
            f"actual must be [{s}, {h}] and usable_days [{s}], got {actual.shape} and {np.shape(usable_days)}"
        )
    lengths = np.arange(1, h + 1, dtype=np.float64)
    m = None if mean is None else np.asarray(mean, dtype=np.float64)[:, None]
    med, down, up = base_totals(daily[:, None], lengths[None, :], base_levels, m)  # [S, H] each
    seen = np.cumprod(np.isfinite(actual), axis=1).astype(bool)  # first L days all observed
    ok = seen & (lengths[None, :] <= np.asarray(usable_days)[:, None])
    u = scores(np.cumsum(np.nan_to_num(actual), axis=1), med, down, up)  # [S, H]
    group = group_of(daily[:, None], np.broadcast_to(lengths, (s, h)))  # [S, H]
    rows, counts = [], []
    for j in range(h):  # H period lengths (28) x 2 groups, each a vectorised quantile
        uj, gj = u[ok[:, j], j], group[ok[:, j], j]
        if uj.size < MIN_TOTALS:
            raise ValueError(f"{uj.size} validation totals of {j + 1} days; the calibration needs {MIN_TOTALS}")
        pooled = np.quantile(uj, levels)
        rows.append(
            [np.quantile(uj[gj == g], levels) if (gj == g).sum() >= MIN_TOTALS else pooled for g in range(len(GROUPS))]
        )
        counts.append(int(uj.size))
    return TotalsCalibration(
        levels=tuple(float(x) for x in levels),
        days=tuple(range(1, h + 1)),
        scores=np.maximum.accumulate(np.asarray(rows), axis=-1),  # guards float ties only
        base_levels=tuple(float(x) for x in base_levels),
        n_fit=tuple(counts),
        slow_scale="floor" if mean is None else "mean",
    )


def total_coverage(
    daily: np.ndarray,
    actual: np.ndarray,
    days: int,
    base_levels: Sequence[float],
    cal: TotalsCalibration | None,
    mean: np.ndarray | None = None,
) -> float:
    """P10-P90 coverage of `days`-day totals (series with all those days observed), from the summed
    daily quantiles (cal None) or the calibrated totals (`mean` [S, H]: the daily means it may need)."""
    seen = np.isfinite(actual[:, :days]).all(axis=1)
    total = actual[seen, :days].sum(axis=1)
    lv = list(base_levels)
    if cal is None:
        span = daily[seen][:, :days].sum(axis=1)  # summed quantiles (rho = 1)
        lo, hi = span[:, lv.index(0.1)], span[:, lv.index(0.9)]
    else:
        q = cal.totals(daily[seen], np.full(int(seen.sum()), float(days)), None if mean is None else mean[seen])
        lo, hi = q[:, list(cal.levels).index(0.1)], q[:, list(cal.levels).index(0.9)]
    return float(np.mean((total >= lo) & (total <= hi))) if total.size else float("nan")


COVERAGE_DAYS = (7, 14, 28)
RHOS = (0.0, 0.5, 1.0)  # the replenishment rule's ways of combining daily quantiles (1 = summed)


def lead_time_coverage(
    actual: np.ndarray,
    quantiles: np.ndarray,
    levels: Sequence[float],
    cal: TotalsCalibration | None = None,
    days_list: Sequence[int] = COVERAGE_DAYS,
    mean: np.ndarray | None = None,
) -> dict[str, float]:
    """P10-P90 coverage of total demand over the first L test days, L in days_list, for the
    uncalibrated ways of combining daily quantiles (rho = 1: summed, 0: independent days, 0.5: in
    between) and, when given, the calibrated totals. Keys "<L>d_rho<rho>" and "<L>d_calibrated"."""
    seen = np.isfinite(actual).all(axis=1)
    lv = np.asarray(levels, dtype=np.float64)
    h = quantiles.shape[1]
    out = {}
    for days in days_list:
        total = actual[seen, :days].sum(axis=1)
        w = np.full(int(seen.sum()), float(days))
        for rho in RHOS:
            q = period_demand_quantiles(quantiles[seen], w, lv, rho, h)
            out[f"{days}d_rho{rho:g}"] = float(np.mean((total >= q[:, 0]) & (total <= q[:, -1])))
        if cal is not None:
            m = None if mean is None else mean[seen]
            out[f"{days}d_calibrated"] = total_coverage(quantiles[seen], actual[seen], days, levels, cal, m)
    return out


def pooled_lead_time_coverage(
    actual: np.ndarray,
    quantiles: np.ndarray,
    offsets: Sequence[int],
    levels: Sequence[float],
    cal: TotalsCalibration | None = None,
    mean: np.ndarray | None = None,
) -> dict[str, float]:
    """`lead_time_coverage` pooled over forecast origins (mean [S, C, H]: their daily means, when the
    calibration needs them): quantiles [S, C, H, k] were made at test days
    offsets[C] (0 = the last history day), actual [S, T] are the T test days. An L-day total counts from
    every origin with offset + L <= T, each series once per origin. One origin's coverage moves with that
    period's luck, which all series share (a calm week, a payday); several origins average some of it out."""
    hits: dict[str, float] = {}
    counts: dict[str, int] = {}
    for c, offset in enumerate(offsets):
        fits = [d for d in COVERAGE_DAYS if offset + d <= actual.shape[1]]
        for days in fits:
            window = actual[:, offset : offset + days]
            n = int(np.isfinite(window).all(axis=1).sum())
            m = None if mean is None else mean[:, c]
            for key, value in lead_time_coverage(window, quantiles[:, c], levels, cal, (days,), m).items():
                hits[key] = hits.get(key, 0.0) + value * n
                counts[key] = counts.get(key, 0) + n
    return {k: hits[k] / counts[k] if counts[k] else float("nan") for k in hits}


def coverage_table(cov: dict[str, float]) -> str:
    """Markdown: P10-P90 coverage of 7/14/28-day totals per way of building the totals' interval."""
    names = {"rho1": "summed daily quantiles (rho 1)", "rho0.5": "rho 0.5", "rho0": "independent days (rho 0)"}
    names["calibrated"] = "calibrated on the validation split"
    rows = []
    for key, label in names.items():
        if f"{COVERAGE_DAYS[0]}d_{key}" in cov:
            cells = {f"{d} days": f"{cov[f'{d}d_{key}']:.1%}" for d in COVERAGE_DAYS}
            rows.append({"P10-P90 of totals": label, **cells})
    return format_table(rows)
