"""The sales generator: determinism, shapes, the demand structure it promises (checked statistically on
the data, not on its internal constants), the 28-day split, the file round trip and the CLI."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from training.data import sales
from training.data.errors import DataFileError
from training.data.sales import (
    EVENT_EFFECTS,
    EVENT_NAMES,
    PROFILES,
    SalesConfig,
    calendar_events,
    calendar_parts,
    generate,
    load_dir,
    save_dir,
    split_last_days,
)
from training.data.schema import SalesPanel


@pytest.fixture(scope="module")
def tiny() -> SalesPanel:
    return generate(PROFILES["tiny"], seed=0)


@pytest.fixture(scope="module")
def quick() -> SalesPanel:
    return generate(PROFILES["quick"], seed=1)


@pytest.fixture
def parquet_engine(monkeypatch) -> str:
    """Real Parquet when pyarrow imports; else a pickle stand-in that keeps the typed columns (datetime,
    categorical, int8...) a Parquet file gives back, so the typed-column code paths still run."""
    if sales.parquet_available():
        return "pyarrow"
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda self, path, **kw: self.to_pickle(path))
    monkeypatch.setattr(pd, "read_parquet", lambda path, **kw: pd.read_pickle(path))
    return "stand-in"


def _always_on(panel: SalesPanel) -> np.ndarray:
    """bool [n_series]: series on sale from the first day (no late launch)."""
    return np.isfinite(panel.units).all(axis=1)


def _demean_two_way(a: np.ndarray) -> np.ndarray:
    """Remove series and day means of a balanced [series, days] table (two-way fixed effects)."""
    a = a - a.mean(axis=1, keepdims=True)
    return a - a.mean(axis=0, keepdims=True)


# ---------------------------------------------------------------------------------------- basics


def test_profiles_cover_three_years_and_grow():
    assert all(cfg.n_days >= 3 * 365 for cfg in PROFILES.values())
    assert PROFILES["tiny"].n_series < PROFILES["quick"].n_series < PROFILES["full"].n_series


def test_config_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="n_categories"):
        SalesConfig(n_items=2, n_categories=3)
    with pytest.raises(ValueError, match="n_days"):
        SalesConfig(n_days=30)


def test_generate_is_seeded_and_deterministic(tiny):
    again = generate(PROFILES["tiny"], seed=0)
    other = generate(PROFILES["tiny"], seed=1)
    np.testing.assert_array_equal(tiny.units, again.units)
    np.testing.assert_array_equal(tiny.expected, again.expected)
    assert not np.array_equal(np.nan_to_num(tiny.units), np.nan_to_num(other.units))


def test_shapes_dtypes_and_series_order(tiny):
    cfg = PROFILES["tiny"]
    shape = (cfg.n_stores * cfg.n_items, cfg.n_days)
    for name in ("units", "price", "promo", "expected"):
        arr = getattr(tiny, name)
        assert arr.shape == shape and arr.dtype == np.float32, name
    assert tiny.events.shape == (cfg.n_days, len(EVENT_NAMES)) and tiny.events.dtype == np.int8
    assert tiny.event_names == EVENT_NAMES
    assert tiny.start_date == np.datetime64(cfg.start_date)
    # Store-major order; ids sort like their indices, so a loader that sorts ids keeps the order.
    np.testing.assert_array_equal(tiny.store, np.repeat(np.arange(cfg.n_stores), cfg.n_items))
    np.testing.assert_array_equal(tiny.item, np.tile(np.arange(cfg.n_items), cfg.n_stores))
    for ids in (tiny.store_ids, tiny.item_ids):
        assert list(ids) == sorted(ids) and len(set(ids)) == len(ids)
    assert set(tiny.category.tolist()) == set(range(cfg.n_categories))
    # An item has one category in every store.
    assert (tiny.category.reshape(cfg.n_stores, cfg.n_items) == tiny.category[: cfg.n_items]).all()
    assert np.isfinite(tiny.price).all() and (tiny.price > 0).all()
    assert set(np.unique(tiny.promo).tolist()) <= {0.0, 1.0}


def test_expected_is_nonnegative_and_units_track_it(quick):
    units, expected = quick.units, quick.expected
    np.testing.assert_array_equal(np.isnan(units), np.isnan(expected))
    on = np.isfinite(units)
    assert (expected[on] >= 0).all()
    assert (units[on] >= 0).all() and (units[on] == np.round(units[on])).all()
    assert units[on].sum() / expected[on].sum() == pytest.approx(1.0, abs=0.03)
    unit_means, expected_means = np.nanmean(units, axis=1), np.nanmean(expected, axis=1)
    assert np.corrcoef(unit_means, expected_means)[0, 1] > 0.98
    # Calibrated cell by cell: within each decile of expected demand, units average to the expected mean.
    e, u = expected[on], units[on]
    edges = np.quantile(e, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, e, side="right") - 1, 0, 9)
    for b in range(10):
        assert u[bins == b].mean() == pytest.approx(e[bins == b].mean(), rel=0.1), b


# ------------------------------------------------------------------------------ demand structure


def test_weekly_seasonality(quick):
    total = quick.units[_always_on(quick)].sum(axis=0)
    _, _, _, weekday, _ = calendar_parts(quick.dates)
    # Day-of-week means differ far beyond their standard errors (one-way ANOVA F statistic).
    groups = [total[weekday == d] for d in range(7)]
    between = np.var([g.mean() for g in groups]) * len(groups[0])
    within = np.mean([g.var(ddof=1) for g in groups])
    assert between / within > 10
    # Autocorrelation of the de-trended total peaks again at lag 7, above the mid-week lags.
    trend = np.convolve(total, np.ones(28) / 28, mode="same")
    ratio = (total / trend)[28:-28] - 1.0
    acf = {k: np.corrcoef(ratio[:-k], ratio[k:])[0, 1] for k in range(1, 8)}
    assert acf[7] > 0.1 and acf[7] > max(acf[3], acf[4])


def test_yearly_seasonality(quick):
    on = _always_on(quick)
    weeks = quick.n_days // 7
    lag_year, lag_half = [], []
    for c in np.unique(quick.category):  # seasonality is category-specific: test each category's total
        daily = quick.units[on & (quick.category == c)].sum(axis=0)
        weekly = np.log1p(daily[: weeks * 7].reshape(weeks, 7).sum(axis=1))
        x = np.arange(weeks)
        weekly = weekly - np.polyval(np.polyfit(x, weekly, 1), x)
        lag_year.append(np.corrcoef(weekly[:-52], weekly[52:])[0, 1])
        lag_half.append(np.corrcoef(weekly[:-26], weekly[26:])[0, 1])
    assert np.mean(lag_year) > 0.3
    assert np.mean(lag_year) > np.mean(lag_half)


def test_promo_days_sell_more_in_the_same_series(quick):
    promo = quick.promo > 0
    higher = []
    for s in np.flatnonzero(_always_on(quick)):
        if promo[s].sum() >= 5 and quick.units[s].mean() >= 1:
            higher.append(quick.units[s, promo[s]].mean() > quick.units[s, ~promo[s]].mean())
    assert len(higher) >= 20
    assert np.mean(higher) > 0.8
    # Promotions are announced as price drops.
    assert (
        quick.price[promo] < np.median(quick.price, axis=1, keepdims=True).repeat(quick.n_days, 1)[promo]
    ).mean() > 0.9


def test_price_elasticity_is_negative(quick):
    on = _always_on(quick)
    log_price = _demean_two_way(np.log(quick.price[on])).ravel()
    promo = _demean_two_way(quick.promo[on]).ravel()
    design = np.stack([log_price, promo], axis=1)
    # Two-way fixed effects (series, day) absorb levels and the shared calendar; price varies within series.
    (slope_expected, lift_expected), *_ = np.linalg.lstsq(
        design, _demean_two_way(np.log(quick.expected[on])).ravel(), rcond=None
    )
    units = quick.units[on] / quick.units[on].mean(axis=1, keepdims=True)
    (slope_units, _), *_ = np.linalg.lstsq(design, _demean_two_way(units).ravel(), rcond=None)
    assert slope_expected < -0.5 and slope_units < 0
    assert lift_expected > 0  # promotions add demand beyond their price cut


def test_events_move_demand_in_their_direction(quick):
    total = quick.units[_always_on(quick)].sum(axis=0)
    _, _, _, weekday, doy = calendar_parts(quick.dates)
    angle = 2 * np.pi * doy / 365.25
    smooth = np.stack([np.cos(angle), np.sin(angle), np.cos(2 * angle), np.sin(2 * angle)], axis=1)
    trend = (np.arange(quick.n_days) / quick.n_days)[:, None]
    design = np.concatenate([quick.events, np.eye(7)[weekday], smooth, trend], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, np.log1p(total), rcond=None)
    for j, name in enumerate(quick.event_names):
        assert quick.events[:, j].sum() > 0, name
        assert np.sign(coef[j]) == np.sign(EVENT_EFFECTS[name]), (name, coef[j])


def test_slow_movers_are_intermittent(quick):
    on = np.isfinite(quick.units)
    mean = np.nanmean(quick.expected, axis=1)
    zero_share = np.where(on, quick.units == 0, False).sum(axis=1) / on.sum(axis=1)
    slow, fast = mean < 0.5, mean > 5
    assert slow.sum() >= 10 and fast.sum() >= 10
    assert zero_share[slow].mean() > 0.5
    assert zero_share[fast].mean() < 0.2
    # More zeros than Poisson counts with the same means: over-dispersion and zero inflation.
    assert zero_share[slow].mean() > np.exp(-mean[slow]).mean()


def test_late_launches_have_nan_before_launch(quick):
    cfg = PROFILES["quick"]
    on = np.isfinite(quick.units)
    late = ~on[:, 0]
    assert late.any() and (~late).any()
    # NaN only as a prefix: once launched, always on sale.
    assert (np.diff(on.astype(np.int8), axis=1) >= 0).all()
    first = on.argmax(axis=1)
    # An item launches on the same day in every store, with history before the forecast window.
    by_store = first.reshape(cfg.n_stores, cfg.n_items)
    np.testing.assert_array_equal(by_store, np.broadcast_to(by_store[0], by_store.shape))
    assert (first[late] > 0).all() and (first[late] <= quick.n_days - sales.HOLDOUT_DAYS - cfg.min_history).all()
    assert (quick.promo[~on] == 0).all() and np.isfinite(quick.price).all()


def test_calendar_places_fixed_and_moving_events():
    events, names = calendar_events("2024-01-01", 366)
    dates = np.datetime64("2024-01-01") + np.arange(366)

    def days(name: str) -> list[str]:
        return [str(d) for d in dates[events[:, names.index(name)] == 1]]

    assert days("easter") == ["2024-03-29", "2024-03-30", "2024-03-31", "2024-04-01"]  # Easter Sunday 31 March
    assert days("black_friday")[0] == "2024-11-29" and len(days("black_friday")) == 4
    assert days("mothers_day")[-1] == "2024-05-12"
    assert days("christmas_day") == ["2024-12-25"] and days("new_year") == ["2024-01-01"]
    assert len(days("payday")) == 24


# ------------------------------------------------------------------------------- split and files


def test_split_last_days(tiny):
    history, future = split_last_days(tiny, days=28)
    assert history.n_days == tiny.n_days - 28 and future.n_days == 28
    assert history.n_series == future.n_series == tiny.n_series
    assert future.start_date == tiny.dates[-28] and history.start_date == tiny.start_date
    for name in ("units", "price", "promo", "expected"):
        joined = np.concatenate([getattr(history, name), getattr(future, name)], axis=1)
        np.testing.assert_array_equal(joined, getattr(tiny, name))
    np.testing.assert_array_equal(np.concatenate([history.events, future.events]), tiny.events)
    np.testing.assert_array_equal(future.item, tiny.item)
    with pytest.raises(ValueError):
        split_last_days(tiny, days=tiny.n_days)


def _assert_same_panel(a: SalesPanel, b: SalesPanel) -> None:
    for name in ("units", "price", "promo", "expected", "store", "item", "category", "events"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert list(a.store_ids) == list(b.store_ids) and list(a.item_ids) == list(b.item_ids)
    assert a.start_date == b.start_date and a.event_names == b.event_names


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_save_load_round_trip(tiny, tmp_path, fmt, parquet_engine):
    save_dir(tiny, tmp_path, fmt=fmt)
    long = pd.read_csv(tmp_path / "sales.csv") if fmt == "csv" else pd.read_parquet(tmp_path / "sales.parquet")
    assert list(long.columns) == ["store_id", "item_id", "date", "units", "price", "promo"]
    assert len(long) == int(np.isfinite(tiny.units).sum())  # one row per launched series-day
    _assert_same_panel(tiny, load_dir(tmp_path))


def test_load_dir_refuses_ground_truth_for_an_edited_file(tiny, tmp_path):
    save_dir(tiny, tmp_path, fmt="csv")
    text = (tmp_path / "sales.csv").read_text().splitlines()
    fields = text[1].split(",")
    fields[3] = str(int(fields[3]) + 1)  # one unit more on the first row
    (tmp_path / "sales.csv").write_text("\n".join([text[0], ",".join(fields), *text[2:]]) + "\n")
    with pytest.raises(DataFileError, match=r"expected\.npy"):
        load_dir(tmp_path)


def test_save_without_ground_truth_loads_without_it(tiny, tmp_path):
    save_dir(replace(tiny, expected=None), tmp_path, fmt="csv")
    assert not (tmp_path / "expected.npy").exists()
    assert load_dir(tmp_path).expected is None


def test_cli_writes_a_loadable_folder(tmp_path, capsys):
    out = tmp_path / "sales"
    rc = sales.main(["--profile", "tiny", "--out", str(out), "--items", "6", "--seed", "3", "--format", "csv"])
    assert rc == 0
    panel = load_dir(out)
    assert panel.n_series == PROFILES["tiny"].n_stores * 6 and panel.expected is not None
    assert f"{panel.n_series} series" in capsys.readouterr().out
