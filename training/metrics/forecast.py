"""Forecast accuracy metrics, pure numpy and vectorised (no loops over series or days).

Conventions: `history` is [n_series, n_hist] (what was known when forecasting, NaN = not yet
launched), `actual` and forecasts are [n_series, horizon]. NaN in `history` counts as 0 sales (the M5
convention: leading zeros are then skipped by the "from the first sale" rule).

- `wrmsse`: the M5 accuracy metric. Every hierarchy level (e.g. total, store, category, series) is
  aggregated from the series; each aggregate's squared error over the horizon is scaled by the mean
  squared one-day change of its own history from its first sale on (RMSSE); aggregates are weighted
  by their revenue over the last 28 history days (weights sum to 1 per level) and levels are averaged.
- `mase`: mean absolute error scaled per series by the in-sample MAE of the seasonal naive forecast
  (lag m, default 7), averaged over series. MASE < 1 beats last week's in-sample naive.
- `seasonal_naive`: repeat the last m observed days over the horizon (the baseline).
- `pinball_loss`, `weighted_quantile_loss`, `interval_coverage`: probabilistic forecasts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _as2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_series, n_days], got shape {a.shape}")
    return a


def seasonal_naive(history: np.ndarray, horizon: int, m: int = 7) -> np.ndarray:
    """[n_series, n_hist] -> [n_series, horizon]: day h repeats day (n_hist - m + h % m). NaN -> 0."""
    history = np.nan_to_num(_as2d(history, "history"))
    if history.shape[1] < m:
        raise ValueError(f"history has {history.shape[1]} days, seasonal naive needs at least m={m}")
    return history[:, history.shape[1] - m + np.arange(horizon) % m]


def group_sum(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Sum rows of `values` [n_series, T] by integer `groups` [n_series] -> [n_groups, T] (dense labels)."""
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    out = np.zeros((int(inv.max()) + 1 if inv.size else 0, values.shape[1]), dtype=np.float64)
    np.add.at(out, inv.ravel(), values)
    return out


def rmsse_scale(history: np.ndarray) -> np.ndarray:
    """Per row: mean squared one-day change from the first non-zero value on. [n, T] -> [n] (0 = no sales)."""
    history = np.nan_to_num(_as2d(history, "history"))
    n, t = history.shape
    started = np.cumsum(history != 0, axis=1) > 0
    first = np.where(started.any(axis=1), started.argmax(axis=1), t)
    # Changes (t-1 -> t) count when day t-1 is at or after the first sale.
    diff2 = np.diff(history, axis=1) ** 2
    counted = np.arange(1, t)[None, :] > first[:, None]
    n_counted = counted.sum(axis=1)
    total = (diff2 * counted).sum(axis=1)
    return np.divide(total, n_counted, out=np.zeros(n), where=n_counted > 0)


def rmsse(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Root mean squared scaled error per row [n]; NaN where the history never changes (scale 0)."""
    actual, forecast = np.nan_to_num(_as2d(actual, "actual")), _as2d(forecast, "forecast")
    if actual.shape != forecast.shape:
        raise ValueError(f"actual {actual.shape} and forecast {forecast.shape} differ")
    scale = rmsse_scale(history)
    mse = ((actual - forecast) ** 2).mean(axis=1)
    return np.sqrt(np.divide(mse, scale, out=np.full_like(mse, np.nan), where=scale > 0))


def wrmsse(
    actual: np.ndarray,
    forecast: np.ndarray,
    history: np.ndarray,
    history_price: np.ndarray,
    levels: Mapping[str, np.ndarray],
    weight_days: int = 28,
) -> dict[str, float]:
    """M5 WRMSSE over the hierarchy `levels` (name -> group label per series [n_series]).

    history_price: [n_series, n_hist], for the revenue weights (units x price over the last
    `weight_days` of history). Aggregates whose history never changes get no weight (they also have
    no revenue). -> {"wrmsse": mean over levels, "<level>": that level's weighted RMSSE}.
    """
    actual, forecast, history = (
        _as2d(a, n) for a, n in ((actual, "actual"), (forecast, "forecast"), (history, "history"))
    )
    hist0 = np.nan_to_num(history)
    revenue = (hist0 * np.nan_to_num(np.asarray(history_price, dtype=np.float64)))[:, -weight_days:].sum(axis=1)
    out: dict[str, float] = {}
    for name, groups in levels.items():  # a handful of levels, each vectorised
        a, f, h = (group_sum(x, groups) for x in (np.nan_to_num(actual), forecast, hist0))
        w = group_sum(revenue[:, None], groups)[:, 0]
        err = rmsse(a, f, h)
        ok = np.isfinite(err)
        w = np.where(ok, w, 0.0)
        out[name] = float((w * np.nan_to_num(err)).sum() / w.sum()) if w.sum() > 0 else float("nan")
    out["wrmsse"] = float(np.nanmean([out[k] for k in levels]))
    return out


def mase(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray, m: int = 7) -> float:
    """Mean over series of MAE / in-sample MAE of the lag-m naive (from the first sale on).

    Series whose in-sample naive error is 0 (never sold, or perfectly periodic) are left out.
    Actual NaN (not launched) days are left out of the numerator.
    """
    actual, forecast = _as2d(actual, "actual"), _as2d(forecast, "forecast")
    history = np.nan_to_num(_as2d(history, "history"))
    t = history.shape[1]
    started = np.cumsum(history != 0, axis=1) > 0
    first = np.where(started.any(axis=1), started.argmax(axis=1), t)
    counted = np.arange(m, t)[None, :] - m >= first[:, None]
    n_counted = counted.sum(axis=1)
    scale = np.divide(
        (np.abs(history[:, m:] - history[:, :-m]) * counted).sum(axis=1),
        n_counted,
        out=np.zeros(len(history)),
        where=n_counted > 0,
    )
    seen = np.isfinite(actual)
    n_seen = seen.sum(axis=1)
    mae = np.divide(
        (np.abs(np.nan_to_num(actual) - forecast) * seen).sum(axis=1),
        n_seen,
        out=np.zeros(len(history)),
        where=n_seen > 0,
    )
    ok = (scale > 0) & (n_seen > 0)
    return float((mae[ok] / scale[ok]).mean()) if ok.any() else float("nan")


def pinball_loss(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Pinball loss per level. actual [...], quantiles [..., n_levels] -> mean over finite actuals [n_levels]."""
    actual = np.asarray(actual, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    tau = np.asarray(levels, dtype=np.float64)
    if q.shape != (*actual.shape, tau.size):
        raise ValueError(f"quantiles shape {q.shape} must be actual's {actual.shape} + ({tau.size},)")
    seen = np.isfinite(actual)
    diff = np.nan_to_num(actual)[..., None] - q
    loss = np.maximum(tau * diff, (tau - 1.0) * diff)
    return (loss * seen[..., None]).reshape(-1, tau.size).sum(axis=0) / max(int(seen.sum()), 1)


def weighted_quantile_loss(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> float:
    """wQL (as in GluonTS): 2 * sum of pinball losses / sum of |actual|, averaged over levels."""
    actual = np.asarray(actual, dtype=np.float64)
    seen = np.isfinite(actual)
    denom = np.abs(np.nan_to_num(actual)).sum()
    total = pinball_loss(actual, quantiles, levels) * max(int(seen.sum()), 1)
    return float((2.0 * total / denom).mean()) if denom > 0 else float("nan")


def interval_coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of finite actuals with lower <= actual <= upper."""
    actual = np.asarray(actual, dtype=np.float64)
    seen = np.isfinite(actual)
    inside = (actual >= lower) & (actual <= upper)
    return float(inside[seen].mean()) if seen.any() else float("nan")
