"""The pricing baselines, each choosing one price per case within the same guard rails.

- keep: the current price (clipped into the allowed range when a rail excludes it).
- cost-plus: unit cost times one fixed markup for every item (default: the shop's median current markup).
- log-log regression: per series, OLS of log(1 + units) on log(price), promotion and weekday over the
  last year of history; the slope is the elasticity, and the price maximises (p - cost) * p^slope on the
  candidate grid.
- random forest: one scikit-learn forest over all series' days (log price vs the series' mean price,
  promotion, weekday, month, store, category, and the mean units of the 28 days before), asked for the
  test days at every candidate price; the price with the highest predicted profit wins.
"""

from __future__ import annotations

import numpy as np

from serving.price.advice import best_index
from training.data.schema import SalesPanel
from training.pricing.cases import Cases

FIT_DAYS = 365
LEVEL_DAYS = 28


def keep(cases: Cases) -> np.ndarray:
    return np.clip(cases.current, cases.low, cases.high)


def cost_plus(cases: Cases, markup: float | None = None) -> tuple[np.ndarray, float]:
    m = float(np.median(cases.current / cases.cost - 1.0)) if markup is None else markup
    return np.clip(cases.cost * (1.0 + m), cases.low, cases.high), m


def pick(cases: Cases, grids: list[np.ndarray], values: list[np.ndarray]) -> np.ndarray:
    return np.array([g[best_index(v, g, c)] for g, v, c in zip(grids, values, cases.current, strict=True)])


def _weekday(panel: SalesPanel, days: np.ndarray) -> np.ndarray:
    return (np.asarray(panel.start_date + days, dtype="datetime64[D]").astype(np.int64) + 3) % 7


def loglog(history: SalesPanel, cases: Cases, grids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """-> (prices [S], fitted elasticities [S])."""
    t = history.n_days
    days = np.arange(max(t - FIT_DAYS, 0), t)
    dow = np.eye(7)[_weekday(history, days)][:, 1:]
    slopes = np.zeros(len(cases.series))
    for i, s in enumerate(cases.series):
        u, p, pm = history.units[s, days], history.price[s, days], history.promo[s, days]
        ok = np.isfinite(u) & np.isfinite(p) & (p > 0)
        x = np.column_stack([np.ones(ok.sum()), np.log(p[ok]), pm[ok], dow[ok]])
        coef = np.linalg.lstsq(x, np.log1p(u[ok]), rcond=None)[0] if ok.sum() > x.shape[1] else np.zeros(9)
        slopes[i] = coef[1]
    values = [(g - c) * g**b for g, c, b in zip(grids, cases.cost, slopes, strict=True)]
    return pick(cases, grids, values), slopes


def _rf_features(
    log_ratio: np.ndarray, promo: np.ndarray, dow: np.ndarray, month: np.ndarray, store: np.ndarray,
    category: np.ndarray, level: np.ndarray,
) -> np.ndarray:  # fmt: skip
    return np.column_stack([log_ratio, promo, dow, month, store, category, np.log1p(level)]).astype(np.float32)


def random_forest(
    history: SalesPanel, cases: Cases, grids: list[np.ndarray], seed: int = 0, n_estimators: int = 60
) -> np.ndarray:
    from sklearn.ensemble import RandomForestRegressor  # the `train` extra; only this baseline needs it

    t = history.n_days
    days = np.arange(max(t - FIT_DAYS, LEVEL_DAYS), t)
    rows = cases.series
    units = history.units[rows].astype(np.float64)
    price = history.price[rows].astype(np.float64)
    ref = np.nanmean(price[:, days], axis=1)
    # Mean units of the LEVEL_DAYS before each day (a lagged level: no day sees its own sales).
    filled = np.nan_to_num(units)
    csum = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(filled, axis=1)], axis=1)
    level = (csum[:, days] - csum[:, days - LEVEL_DAYS]) / LEVEL_DAYS
    dates = np.asarray(history.start_date + days, dtype="datetime64[D]")
    month = dates.astype("datetime64[M]").astype(np.int64) % 12
    n, d = len(rows), len(days)
    x = _rf_features(
        np.log(price[:, days] / ref[:, None]).ravel(),
        history.promo[rows][:, days].ravel(),
        np.tile(_weekday(history, days), n),
        np.tile(month, n),
        np.repeat(history.store[rows], d),
        np.repeat(history.category[rows], d),
        level.ravel(),
    )
    y = units[:, days].ravel()
    ok = np.isfinite(y) & np.isfinite(x).all(axis=1)
    forest = RandomForestRegressor(n_estimators, min_samples_leaf=20, max_features=0.6, n_jobs=1, random_state=seed)
    forest.fit(x[ok], y[ok])

    test_days = np.arange(t, t + cases.base_units.shape[1])
    test_dates = np.asarray(history.start_date + test_days, dtype="datetime64[D]")
    test_month = test_dates.astype("datetime64[M]").astype(np.int64) % 12
    last_level = filled[:, t - LEVEL_DAYS : t].mean(axis=1)
    h = len(test_days)
    blocks = [
        _rf_features(
            np.repeat(np.log(grid / ref[i]), h),
            np.zeros(len(grid) * h),
            np.tile(_weekday(history, test_days), len(grid)),
            np.tile(test_month, len(grid)),
            np.full(len(grid) * h, history.store[rows[i]]),
            np.full(len(grid) * h, history.category[rows[i]]),
            np.full(len(grid) * h, last_level[i]),
        )
        for i, grid in enumerate(grids)
    ]
    predicted = np.split(forest.predict(np.concatenate(blocks)), np.cumsum([len(b) for b in blocks])[:-1])
    values = [
        (grid - cases.cost[i]) * units.reshape(len(grid), h).sum(axis=1)
        for i, (grid, units) in enumerate(zip(grids, predicted, strict=True))
    ]
    return pick(cases, grids, values)
