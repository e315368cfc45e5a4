"""Seeded M5-like daily sales generator with its ground truth (the expected demand), splits, files, CLI.

Demand of series s (store x item) on day t, on the log scale:

    log E[units] = level(store size x item popularity) + growth * years        trend
                 + weekly[category, weekday] + yearly[category, day of year]    seasonality
                 + elasticity[item] * log(price / launch-era regular price)     price (log-log)
                 + lift[category] * promo                                       promotion (display/ad)
                 + events[t] @ effect[:, category]                              holidays, paydays
                 + drift[s, t]                                                  AR(1) local level
                 + log(1 - exp(-(t - launch) / tau))                            launch ramp (new items)

units ~ zero-inflated gamma-Poisson (negative binomial) with exactly that mean; slow movers get a
low popularity and zero inflation (intermittent demand). Prices follow item-level regular price
changes times a store price index, and drop on promotion days (weekly promotion slots per series,
3-7 days, 10-50% off): price, promo and events are known in advance, so a forecaster may use them.
New items launch late (units NaN before launch) with a short history before the last 28 days.

`generate(cfg, seed) -> SalesPanel` with `expected` filled (NaN before launch, like units).
Series order: store-major, then item; ids are zero-padded text, so files reload in that order.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from training.common import progress
from training.data.errors import DataFileError
from training.data.fingerprints import sales_units_fingerprint
from training.data.sales_io import load_sales
from training.data.schema import SalesPanel
from training.data.table_io import PARQUET_SUFFIXES

log = logging.getLogger(__name__)

# Calendar events and their mean effect on log demand; each category scales the mean by its own
# lognormal factor, so the sign (raise or lower demand) is the same for every category.
EVENT_EFFECTS: dict[str, float] = {
    "new_year": -0.4,  # Jan 1, shops half-closed
    "valentines": 0.15,  # the week up to Feb 14
    "easter": 0.25,  # Good Friday .. Easter Monday (moving)
    "mothers_day": 0.15,  # the week up to the 2nd Sunday of May (moving)
    "black_friday": 0.6,  # Black Friday .. Cyber Monday (moving)
    "christmas_rush": 0.35,  # Dec 10 .. Dec 24
    "christmas_day": -3.0,  # Dec 25, shops closed
    "payday": 0.12,  # 1st and 15th of the month
}
EVENT_NAMES: tuple[str, ...] = tuple(EVENT_EFFECTS)
# Retail week on the log scale, Monday first: a weekend peak that each category reshapes.
WEEKLY_SHAPE = np.array([-0.12, -0.15, -0.1, -0.04, 0.08, 0.25, 0.1])
HOLDOUT_DAYS = 28  # the forecast horizon; new items launch early enough to have history before it
DAYS_PER_YEAR = 365.25


@dataclass
class SalesConfig:
    """Sizes and knobs of the generator. Profiles use >= 3 years; shorter panels are allowed (>= 120 days)."""

    n_stores: int = 2
    n_items: int = 10
    n_categories: int = 3
    n_days: int = 1096
    start_date: str = "2021-01-01"
    mean_units: float = 2.0  # median expected daily units of a regular item in an average store
    popularity_sigma: float = 1.0  # sd of log item popularity (heavy tail: a few best sellers)
    store_sigma: float = 0.35  # sd of log store size
    slow_frac: float = 0.3  # share of items that are slow movers
    slow_scale: float = 0.08  # slow movers' popularity factor
    zero_inflation: tuple[float, float] = (0.1, 0.5)  # slow movers' extra-zero probability range
    dispersion: tuple[float, float] = (1.0, 8.0)  # negative binomial shape range (small = lumpy)
    new_frac: float = 0.1  # share of items launched late
    min_history: int = 60  # days a new item sells before the last HOLDOUT_DAYS
    max_history: int = 365  # at most this many days before the last HOLDOUT_DAYS
    growth_sigma: float = 0.15  # sd of the per-item annual log growth
    weekly_amp: float = 1.0  # scales WEEKLY_SHAPE
    yearly_amp: float = 0.25  # max amplitude of the first yearly harmonic (log scale)
    elasticity: tuple[float, float] = (-2.5, -0.8)  # range of category price elasticities
    price_changes_per_year: float = 2.0  # regular (non-promo) price changes per item
    promo_prob: float = 0.08  # share of (series, week) slots with a promotion
    promo_discount: tuple[float, float] = (0.1, 0.5)
    promo_lift: tuple[float, float] = (0.1, 0.5)  # log uplift beyond the price effect
    event_scale: float = 1.0  # scales EVENT_EFFECTS
    drift_sd: float = 0.03  # daily innovation sd of the AR(1) local level
    drift_phi: float = 0.98

    def __post_init__(self) -> None:
        if min(self.n_stores, self.n_items, self.n_categories) < 1:
            raise ValueError("n_stores, n_items and n_categories must be >= 1")
        if self.n_categories > self.n_items:
            raise ValueError(
                f"n_categories ({self.n_categories}) > n_items ({self.n_items}): a category would be empty"
            )
        if self.n_days < 120:
            raise ValueError(f"n_days must be >= 120, got {self.n_days}")
        np.datetime64(self.start_date, "D")  # raises on a bad date

    @property
    def n_series(self) -> int:
        return self.n_stores * self.n_items


PROFILES: dict[str, SalesConfig] = {
    # Tests: 20 series x 3 years, well under a second.
    "tiny": SalesConfig(n_stores=2, n_items=10, n_categories=3, n_days=1096, start_date="2021-01-01"),
    # `make serve`: 320 series x ~3 years, the last 28 days in June (no Christmas in the test window).
    "quick": SalesConfig(n_stores=4, n_items=80, n_categories=6, n_days=1127, start_date="2021-06-01"),
    # README tables: 3000 series x 5 years, M5-like in size per store.
    "full": SalesConfig(n_stores=10, n_items=300, n_categories=12, n_days=1827, start_date="2019-06-01"),
}


# -------------------------------------------------------------------------------------------- calendar


def calendar_parts(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """datetime64[D] [n] -> year, month (1-12), day (1-31), weekday (Mon=0), day of year (0-365), int64 [n]."""
    years = dates.astype("datetime64[Y]")
    months = dates.astype("datetime64[M]")
    year = years.astype(np.int64) + 1970
    month = (months - years.astype("datetime64[M]")).astype(np.int64) + 1
    day = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    doy = (dates - years.astype("datetime64[D]")).astype(np.int64)
    return year, month, day, weekday, doy


def _easter(year: np.ndarray) -> np.ndarray:
    """Gregorian Easter Sunday per year (Meeus/Jones/Butcher computus) -> datetime64[D]."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    k = (32 + 2 * e + 2 * (c // 4) - h - c % 4) % 7
    m = (a + 11 * h + 22 * k) // 451
    month = (h + k - 7 * m + 114) // 31
    day = (h + k - 7 * m + 114) % 31 + 1
    return _date(year, month, day)


def _date(year: np.ndarray, month: np.ndarray | int, day: np.ndarray | int) -> np.ndarray:
    first = (np.asarray(year) - 1970).astype("datetime64[Y]").astype("datetime64[M]")
    return (first + (np.asarray(month) - 1)).astype("datetime64[D]") + (np.asarray(day) - 1)


def _nth_weekday(year: np.ndarray, month: int, weekday: int, n: int) -> np.ndarray:
    """The n-th `weekday` (Mon=0) of `month` in each year -> datetime64[D]."""
    first = _date(year, month, 1)
    shift = (weekday - (first.astype(np.int64) + 3) % 7) % 7
    return first + shift + 7 * (n - 1)


def calendar_events(start_date: str | np.datetime64, n_days: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Holiday/event flags for `n_days` from `start_date` -> int8 [n_days, len(EVENT_NAMES)], EVENT_NAMES.

    Deterministic (no seed): a forecaster can rebuild the future calendar from the dates alone."""
    dates = np.datetime64(start_date, "D") + np.arange(n_days)
    year, month, day, _, _ = calendar_parts(dates)

    def near(anchor: np.ndarray, lo: int, hi: int) -> np.ndarray:  # lo <= date - anchor(year) <= hi
        offset = (dates - anchor).astype(np.int64)
        return (offset >= lo) & (offset <= hi)

    flags = {
        "new_year": (month == 1) & (day == 1),
        "valentines": (month == 2) & (day >= 8) & (day <= 14),
        "easter": near(_easter(year), -2, 1),
        "mothers_day": near(_nth_weekday(year, 5, 6, 2), -6, 0),
        "black_friday": near(_nth_weekday(year, 11, 3, 4), 1, 4),
        "christmas_rush": (month == 12) & (day >= 10) & (day <= 24),
        "christmas_day": (month == 12) & (day == 25),
        "payday": (day == 1) | (day == 15),
    }
    return np.stack([flags[name] for name in EVENT_NAMES], axis=1).astype(np.int8), EVENT_NAMES


# ------------------------------------------------------------------------------------------ generator


@dataclass
class _Items:
    """Item- and category-level draws shared by all stores (arrays [n_items] unless noted)."""

    category: np.ndarray
    log_pop: np.ndarray
    zero_prob: np.ndarray
    shape: np.ndarray  # negative binomial shape
    elasticity: np.ndarray
    growth: np.ndarray
    launch: np.ndarray  # first day on sale (0 for the original range)
    ramp_tau: np.ndarray
    regular_price: np.ndarray  # [n_items, n_days] before the store price index
    weekly: np.ndarray  # [n_categories, 7]
    yearly: np.ndarray  # [n_categories, n_days]
    lift: np.ndarray  # [n_categories]
    event_effect: np.ndarray  # [n_days, n_categories]: events @ effects


def _draw_items(cfg: SalesConfig, rng: np.random.Generator, events: np.ndarray, doy: np.ndarray) -> _Items:
    n, c, d = cfg.n_items, cfg.n_categories, cfg.n_days
    category = rng.permutation(np.arange(n) % c)  # every category gets items
    order = rng.permutation(n)
    n_new = min(n - 1, round(cfg.new_frac * n)) if cfg.new_frac > 0 else 0
    n_slow = min(n - n_new, round(cfg.slow_frac * n))
    is_new = np.zeros(n, dtype=bool)
    is_new[order[:n_new]] = True
    is_slow = np.zeros(n, dtype=bool)
    is_slow[order[n_new : n_new + n_slow]] = True

    log_pop = np.log(cfg.mean_units) + rng.normal(0.0, cfg.popularity_sigma, n) + is_slow * np.log(cfg.slow_scale)
    zero_prob = np.where(is_slow, rng.uniform(*cfg.zero_inflation, n), 0.0)
    shape = np.exp(rng.uniform(np.log(cfg.dispersion[0]), np.log(cfg.dispersion[1]), n))
    cat_elasticity = rng.uniform(*cfg.elasticity, c)
    elasticity = np.minimum(cat_elasticity[category] + rng.normal(0.0, 0.2, n), -0.2)
    growth = rng.normal(0.0, cfg.growth_sigma, n)

    last_start = d - HOLDOUT_DAYS - cfg.min_history
    first_start = max(1, d - HOLDOUT_DAYS - cfg.max_history)
    launch = np.where(is_new, rng.integers(first_start, max(first_start, last_start) + 1, n), 0)
    ramp_tau = rng.uniform(7.0, 30.0, n)

    # Regular prices: a category price level, an item level, and occasional permanent changes.
    cat_price = np.exp(rng.normal(np.log(5.0), 0.7, c))
    base = cat_price[category] * np.exp(rng.normal(0.0, 0.5, n))
    changes = rng.random((n, d)) < cfg.price_changes_per_year / DAYS_PER_YEAR
    jumps = np.where(changes, rng.normal(0.02, 0.07, (n, d)), 0.0)
    jumps[:, 0] = 0.0
    regular_price = np.maximum(base[:, None] * np.exp(np.cumsum(jumps, axis=1)), 0.2)

    weekly = cfg.weekly_amp * (rng.uniform(0.5, 1.5, (c, 1)) * WEEKLY_SHAPE + rng.normal(0.0, 0.04, (c, 7)))
    weekly -= weekly.mean(axis=1, keepdims=True)
    angle = 2 * np.pi * doy / DAYS_PER_YEAR
    amp1 = rng.uniform(0.1, 1.0, c) * cfg.yearly_amp
    amp2 = rng.uniform(0.0, 0.4, c) * cfg.yearly_amp
    ph1, ph2 = rng.uniform(0, 2 * np.pi, (2, c))
    yearly = amp1[:, None] * np.cos(angle[None, :] - ph1[:, None]) + amp2[:, None] * np.cos(
        2 * angle[None, :] - ph2[:, None]
    )
    lift = rng.uniform(*cfg.promo_lift, c)
    means = np.array([EVENT_EFFECTS[name] for name in EVENT_NAMES]) * cfg.event_scale
    effects = means[:, None] * np.exp(rng.normal(0.0, 0.4, (len(EVENT_NAMES), c)))  # same sign per event
    return _Items(
        category=category.astype(np.int32),
        log_pop=log_pop,
        zero_prob=zero_prob,
        shape=shape,
        elasticity=elasticity,
        growth=growth,
        launch=launch,
        ramp_tau=ramp_tau,
        regular_price=regular_price,
        weekly=weekly,
        yearly=yearly,
        lift=lift,
        event_effect=events.astype(np.float64) @ effects,
    )


def _store_block(
    cfg: SalesConfig, it: _Items, rng: np.random.Generator, weekday: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One store's series (all items) -> units, price, promo, expected, each float32 [n_items, n_days]."""
    n, d = cfg.n_items, cfg.n_days
    t = np.arange(d)
    log_size = rng.normal(0.0, cfg.store_sigma)
    store_growth = rng.normal(0.02, 0.04)
    regular = np.round(it.regular_price * np.exp(rng.normal(0.0, 0.03)), 2)

    # Promotions in weekly slots: a slot is on with promo_prob, lasts 3-7 days, at one discount.
    n_weeks = -(-d // 7)
    slot_on = rng.random((n, n_weeks)) < cfg.promo_prob
    slot_len = rng.integers(3, 8, (n, n_weeks))
    slot_discount = np.round(rng.uniform(*cfg.promo_discount, (n, n_weeks)) / 0.05) * 0.05
    week, day_in_week = t // 7, t % 7
    launched = t[None, :] >= it.launch[:, None]
    promo = slot_on[:, week] & (day_in_week[None, :] < slot_len[:, week]) & launched
    price = np.where(promo, np.round(regular * (1.0 - slot_discount[:, week]), 2), regular)
    # Before launch the shelf price is the launch price, the loader's rule for days before a series' first row.
    launch_price = price[np.arange(n), np.minimum(it.launch, d - 1)]
    price = np.where(launched, price, launch_price[:, None])

    # AR(1) local level, started from its stationary distribution; a loop over days, vectorised over items.
    drift = np.empty((n, d))
    drift[:, 0] = rng.normal(0.0, cfg.drift_sd / np.sqrt(1 - cfg.drift_phi**2), n)
    shocks = rng.normal(0.0, cfg.drift_sd, (n, d))
    for day in range(1, d):
        drift[:, day] = cfg.drift_phi * drift[:, day - 1] + shocks[:, day]

    cat = it.category
    age = t[None, :] - it.launch[:, None]
    ramp = np.log1p(-np.exp(-(np.maximum(age, 0) + 1) / it.ramp_tau[:, None]))
    log_mu = (
        (log_size + it.log_pop)[:, None]
        + (store_growth + it.growth)[:, None] * (t / DAYS_PER_YEAR)[None, :]
        + it.weekly[cat][:, weekday]
        + it.yearly[cat]
        + it.elasticity[:, None] * np.log(price / regular[:, :1])
        + it.lift[cat][:, None] * promo
        + it.event_effect[:, cat].T
        + drift
        + np.where(it.launch[:, None] > 0, ramp, 0.0)
    )
    expected = np.where(launched, np.exp(np.minimum(log_mu, 12.0)), np.nan)

    # Zero-inflated gamma-Poisson whose mean is `expected`: the non-zero branch carries mean / (1 - p0).
    p0 = it.zero_prob[:, None]
    mean_nonzero = np.nan_to_num(expected) / (1.0 - p0)
    k = it.shape[:, None]
    rate = rng.gamma(k, 1.0, (n, d)) * mean_nonzero / k
    units = rng.poisson(rate) * (rng.random((n, d)) >= p0)
    units = np.where(launched, units, np.nan)
    return (
        units.astype(np.float32),
        price.astype(np.float32),
        promo.astype(np.float32),
        expected.astype(np.float32),
    )


def generate(cfg: SalesConfig, seed: int = 0) -> SalesPanel:
    """Simulate the panel -> `SalesPanel` [n_stores * n_items series, n_days], `expected` filled.

    Seeded and deterministic. Item-level draws do not depend on n_stores; each store has its own
    random stream, so generation runs store by store (with a progress bar) in bounded memory."""
    item_seed, *store_seeds = np.random.SeedSequence(seed).spawn(1 + cfg.n_stores)
    start = np.datetime64(cfg.start_date, "D")
    dates = start + np.arange(cfg.n_days)
    _, _, _, weekday, doy = calendar_parts(dates)
    events, names = calendar_events(start, cfg.n_days)
    items = _draw_items(cfg, np.random.default_rng(item_seed), events, doy)

    shape = (cfg.n_series, cfg.n_days)
    units, price, promo, expected = (np.empty(shape, dtype=np.float32) for _ in range(4))
    bar = progress(store_seeds, desc="sales: stores", total=cfg.n_stores, delay=0.5)  # silent when fast
    for s, store_seed in enumerate(bar):
        rows = slice(s * cfg.n_items, (s + 1) * cfg.n_items)
        block = _store_block(cfg, items, np.random.default_rng(store_seed), weekday)
        units[rows], price[rows], promo[rows], expected[rows] = block

    store_width, item_width = len(str(cfg.n_stores)), len(str(cfg.n_items))
    return SalesPanel(
        units=units,
        price=price,
        promo=promo,
        start_date=start,
        store=np.repeat(np.arange(cfg.n_stores, dtype=np.int32), cfg.n_items),
        item=np.tile(np.arange(cfg.n_items, dtype=np.int32), cfg.n_stores),
        category=np.tile(items.category, cfg.n_stores),
        store_ids=np.array([f"store_{i:0{store_width}d}" for i in range(cfg.n_stores)], dtype=object),
        item_ids=np.array([f"item_{i:0{item_width}d}" for i in range(cfg.n_items)], dtype=object),
        events=events,
        event_names=names,
        expected=expected,
    )


@dataclass(frozen=True)
class PriceTruth:
    """The generator's price response per series [n_series]: log E[units] moves by elasticity * d log(price),
    and a promotion day adds promo_lift on top of its price cut."""

    elasticity: np.ndarray
    promo_lift: np.ndarray

    def expected_at(
        self, expected: np.ndarray, price: np.ndarray, promo: np.ndarray, new_price: np.ndarray
    ) -> np.ndarray:
        """True expected units [N, T] had the shelf price been `new_price` (broadcast to [N, T]) without
        promotion, given the panel's `expected` at its own `price` / `promo` [N, T]."""
        e, lift = self.elasticity[:, None], self.promo_lift[:, None]
        return expected * np.exp(e * np.log(new_price / price) - lift * promo)


def price_truth(cfg: SalesConfig, seed: int = 0) -> PriceTruth:
    """The price effects `generate(cfg, seed)` used (the same item-level draws, replayed from the seed)."""
    item_seed = np.random.SeedSequence(seed).spawn(1 + cfg.n_stores)[0]
    start = np.datetime64(cfg.start_date, "D")
    _, _, _, _, doy = calendar_parts(start + np.arange(cfg.n_days))
    events, _ = calendar_events(start, cfg.n_days)
    items = _draw_items(cfg, np.random.default_rng(item_seed), events, doy)
    return PriceTruth(
        elasticity=np.tile(items.elasticity, cfg.n_stores),
        promo_lift=np.tile(items.lift[items.category], cfg.n_stores),
    )


# ---------------------------------------------------------------------------------------------- split


def split_last_days(panel: SalesPanel, days: int = HOLDOUT_DAYS) -> tuple[SalesPanel, SalesPanel]:
    """-> (history: all but the last `days`, future: the last `days`), same series, copies of the arrays."""
    if not 0 < days < panel.n_days:
        raise ValueError(f"days must be in 1..{panel.n_days - 1}, got {days}")
    cut = panel.n_days - days

    def part(cols: slice, start: np.datetime64) -> SalesPanel:
        return replace(
            panel,
            units=panel.units[:, cols].copy(),
            price=panel.price[:, cols].copy(),
            promo=panel.promo[:, cols].copy(),
            events=panel.events[cols].copy(),
            expected=None if panel.expected is None else panel.expected[:, cols].copy(),
            start_date=start,
        )

    return part(slice(0, cut), panel.start_date), part(slice(cut, None), panel.start_date + np.timedelta64(cut, "D"))


# ---------------------------------------------------------------------------------------------- files

# A sales data folder's files (not the gateway's stored series: serving.forecast.source.SALES_FILE).
SALES_STEM = "sales"  # .parquet, or .csv when asked for or when no Parquet engine is installed
CALENDAR_CSV = "calendar.csv"
ITEMS_CSV = "items.csv"
EXPECTED_NPY = "expected.npy"
META_JSON = "meta.json"


def parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def save_dir(panel: SalesPanel, out: str | Path, fmt: str = "auto", meta: dict | None = None) -> Path:
    """Write `panel` as the user schema: sales.parquet (or .csv) long rows for launched days, calendar.csv,
    items.csv, and for generated data expected.npy; meta.json always. fmt: auto | parquet | csv. -> the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "auto":
        fmt = "parquet" if parquet_available() else "csv"
        if fmt == "csv":
            log.warning("no Parquet engine (pyarrow) importable; writing %s.csv instead", SALES_STEM)
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be auto, parquet or csv, got {fmt!r}")
    for stale in (out / f"{SALES_STEM}.parquet", out / f"{SALES_STEM}.csv", out / EXPECTED_NPY):
        stale.unlink(missing_ok=True)  # load_dir must never pick up a previous run's file

    series, day = np.nonzero(np.isfinite(panel.units))  # row-major: by series, then date
    units = panel.units[series, day]
    promo = panel.promo[series, day]
    frame = pd.DataFrame(
        {
            "store_id": pd.Categorical.from_codes(panel.store[series], categories=panel.store_ids),
            "item_id": pd.Categorical.from_codes(panel.item[series], categories=panel.item_ids),
            "date": panel.dates[day],
            "units": units.astype(np.int64) if np.all(units == np.round(units)) else units,
            "price": panel.price[series, day],
            "promo": promo.astype(np.int8) if np.all((promo == 0) | (promo == 1)) else promo,
        }
    )
    if fmt == "parquet":
        frame.to_parquet(out / f"{SALES_STEM}.parquet", index=False)
    else:  # dates as categorical text: formatting a few thousand dates beats formatting millions
        frame["date"] = pd.Categorical.from_codes(day, categories=np.datetime_as_string(panel.dates, unit="D"))
        chunk = 500_000  # pandas writes ~1 M cells/s: show progress on big panels
        with open(out / f"{SALES_STEM}.csv", "w", newline="") as f:
            for lo in progress(range(0, len(frame), chunk), desc="sales: csv", delay=2.0):
                frame.iloc[lo : lo + chunk].to_csv(f, index=False, header=lo == 0)
    calendar = pd.DataFrame(panel.events, columns=list(panel.event_names))
    calendar.insert(0, "date", pd.Series(panel.dates).dt.strftime("%Y-%m-%d"))
    calendar.to_csv(out / CALENDAR_CSV, index=False)
    item_category = np.zeros(panel.item_ids.size, dtype=np.int64)
    item_category[panel.item] = panel.category
    width = len(str(max(int(panel.category.max(initial=0)), 1)))
    pd.DataFrame({"item_id": panel.item_ids, "category_id": [f"cat_{c:0{width}d}" for c in item_category]}).to_csv(
        out / ITEMS_CSV, index=False
    )
    if panel.expected is not None:
        np.save(out / EXPECTED_NPY, panel.expected.astype(np.float32))
    info = {
        "format": fmt,
        "n_series": panel.n_series,
        "n_days": panel.n_days,
        "start_date": str(panel.start_date),
        "event_names": list(panel.event_names),
        "units_fingerprint": sales_units_fingerprint(panel),
        "has_expected": panel.expected is not None,
        **(meta or {}),
    }
    (out / META_JSON).write_text(json.dumps(info, indent=2) + "\n")
    return out


def load_dir(path: str | Path) -> SalesPanel:
    """Read a folder written by `save_dir` through the users' loader (`load_sales`), plus expected.npy.

    The ground truth is attached only when the sales file is unchanged since it was written (same
    units fingerprint), so it can never be misaligned with the series."""
    path = Path(path)
    candidates = [path / f"{SALES_STEM}{suffix}" for suffix in (*PARQUET_SUFFIXES[:1], ".csv")]
    sales = next((p for p in candidates if p.is_file()), None)
    if sales is None:
        raise DataFileError(path, f"no {SALES_STEM}.parquet or {SALES_STEM}.csv in this folder")
    calendar, items = path / CALENDAR_CSV, path / ITEMS_CSV
    panel = load_sales(sales, calendar if calendar.is_file() else None, items if items.is_file() else None)
    expected_path = path / EXPECTED_NPY
    if not expected_path.is_file():
        return panel
    meta_path = path / META_JSON
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("units_fingerprint") != sales_units_fingerprint(panel):
        raise DataFileError(expected_path, f"does not match {sales.name} (edited after generation?)")
    expected = np.load(expected_path)
    if expected.shape != panel.units.shape:
        raise DataFileError(expected_path, f"shape {expected.shape} != sales panel {panel.units.shape}")
    return replace(panel, expected=expected)


# ------------------------------------------------------------------------------------------------ CLI


def summary(panel: SalesPanel) -> str:
    """One line describing a panel."""
    launched = np.isfinite(panel.units)
    late = int((~launched[:, 0]).sum())
    zeros = float((panel.units[launched] == 0).mean())
    return (
        f"{panel.n_series} series ({panel.store_ids.size} stores x {panel.item_ids.size} items, "
        f"{int(panel.category.max()) + 1} categories) x {panel.n_days} days from {panel.start_date}; "
        f"mean {float(np.nanmean(panel.units)):.2f} units/day, {zeros:.0%} zero days, {late} series launched late, "
        f"{float((panel.promo[launched] > 0).mean()):.1%} promo days"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data sales", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", type=Path, default=Path("data/sales"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stores", type=int, help="override the profile's number of stores")
    parser.add_argument("--items", type=int, help="override the profile's number of items")
    parser.add_argument("--days", type=int, help="override the profile's number of days")
    parser.add_argument("--format", choices=("auto", "parquet", "csv"), default="auto", help="sales file format")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    overrides = {k: v for k, v in (("n_stores", args.stores), ("n_items", args.items), ("n_days", args.days)) if v}
    cfg = replace(PROFILES[args.profile], **overrides)
    started = time.perf_counter()
    panel = generate(cfg, seed=args.seed)
    generated = time.perf_counter() - started
    meta = {"source": "training.data.sales", "profile": args.profile, "seed": args.seed, "config": asdict(cfg)}
    save_dir(panel, args.out, fmt=args.format, meta=meta)
    total = time.perf_counter() - started
    print(f"sales: {summary(panel)} -> {args.out} (generated {generated:.1f} s, total {total:.1f} s)", file=sys.stdout)
    return 0
