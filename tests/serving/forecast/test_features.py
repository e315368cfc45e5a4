"""TCN feature building (numpy only): layout, scaling rule, padding, and one definition for all callers."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.forecast.features import (
    FeatureSpec,
    StoredWindows,
    calendar_features,
    panel_calendar,
    reference_price,
    request_features,
    series_scale,
    shift_ids,
    take_windows,
    window_features,
)

ROOT = Path(__file__).resolve().parents[3]
EVENTS = ("sale_day", "holiday")


def _spec(**kw) -> FeatureSpec:
    return FeatureSpec(**{"context_days": 10, "horizon": 4, "scale_days": 5, "event_names": EVENTS, **kw})


def _panel(n: int = 3, t: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    units = rng.poisson(4.0, size=(n, t)).astype(np.float32)
    units[0, :12] = np.nan  # launched on day 12
    price = rng.uniform(1.0, 3.0, size=(n, t)).astype(np.float32)
    promo = (rng.random((n, t)) < 0.2).astype(np.float32)
    events = (rng.random((t, len(EVENTS))) < 0.1).astype(np.int8)
    return units, price, promo, events


def test_channel_names_match_the_arrays():
    spec = _spec()
    units, price, promo, events = _panel()
    cal = calendar_features(np.datetime64("2024-01-01") + np.arange(14), events[:14])
    f = window_features(units[:, :10], price[:, :14], promo[:, :14], cal, spec)
    assert f["past_features"].shape == (3, spec.n_past, 10) and spec.n_past == 2 + 2 + 21 + len(EVENTS)
    assert f["future_features"].shape == (3, spec.n_future, 4)
    assert f["past_features"].dtype == np.float32 and f["series_scale"].dtype == np.float32
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_calendar_one_hots_and_events():
    dates = np.array(["2024-01-01", "2024-06-15", "2024-12-31"], dtype="datetime64[D]")  # Mon, Sat, Tue
    cal = calendar_features(dates, np.array([[1, 0], [0, 1], [0, 0]]))
    assert cal[:, :7].argmax(1).tolist() == [0, 5, 1] and cal[:, :7].sum(1).tolist() == [1, 1, 1]
    assert cal[:, 7:19].argmax(1).tolist() == [0, 5, 11]
    np.testing.assert_allclose(cal[:, 19] ** 2 + cal[:, 20] ** 2, 1.0, rtol=1e-6)
    assert cal[:, 21:].tolist() == [[1, 0], [0, 1], [0, 0]]


def test_scale_rule_by_hand():
    units = np.array([[np.nan, 2.0, 4.0, 6.0, 8.0], [np.nan] * 5])
    assert series_scale(units, scale_days=3).tolist() == [1.0 + 6.0, 1.0]  # mean(4, 6, 8); nothing seen -> 1
    assert series_scale(units, scale_days=3, end=np.array([3, 5])).tolist() == [1.0 + 3.0, 1.0]  # mean(2, 4)
    price = np.array([[2.0, 4.0, np.nan, 0.0], [np.nan] * 4])
    assert reference_price(price, recent_days=2).tolist() == [3.0, 1.0]  # last 2 unknown -> all known days


def test_scaled_units_observed_flag_and_price_ratio():
    spec = _spec()
    units, price, promo, events = _panel()
    cal = calendar_features(np.datetime64("2024-01-01") + np.arange(20), events[:20])
    f = window_features(units[:, 6:16], price[:, 6:20], promo[:, 6:20], cal[6:], spec)
    past, scale = f["past_features"], f["series_scale"]
    seen = np.isfinite(units[:, 6:16])
    np.testing.assert_array_equal(past[:, 1], seen)
    np.testing.assert_allclose(past[:, 0] * scale[:, None], np.where(seen, units[:, 6:16], 0.0), rtol=1e-6)
    ref = price[:, 6:16].mean(axis=1)
    np.testing.assert_allclose(np.exp(f["future_features"][:, 0]), price[:, 16:20] / ref[:, None], rtol=1e-5)


def test_take_windows_pads_before_the_panel():
    units, price, promo, events = _panel()
    cal = panel_calendar(np.datetime64("2024-01-01"), events, pad_before=8)
    u, pr, pm, c = take_windows(units, price, promo, cal, 8, np.array([1, 2]), np.array([3, 20]), 6, 2)
    assert u.shape == (2, 8) and c.shape == (2, 8, cal.shape[1])
    assert np.isnan(u[0, :2]).all() and np.isnan(pr[0, :2]).all() and (pm[0, :2] == 0).all()
    np.testing.assert_array_equal(u[0, 2:], units[1, :6])
    np.testing.assert_array_equal(u[1], units[2, 15:23])
    assert (c[0, :2, 21:] == 0).all()  # no events before the panel
    np.testing.assert_array_equal(c[1], cal[8 + 15 : 8 + 23])
    with pytest.raises(ValueError, match="outside the calendar"):
        take_windows(units, price, promo, cal, 8, np.array([0]), np.array([29]), 6, 4)


def test_request_features_equal_the_training_windows():
    """The gateway's entry point and the training/eval path build identical tensors."""
    spec = _spec(n_stores=2, n_categories=3)
    units, price, promo, events = _panel()
    start = np.datetime64("2024-03-01")
    origin = 25
    cal = panel_calendar(start, events, pad_before=12)
    u, pr, pm, c = take_windows(units, price, promo, cal, 12, np.arange(3), np.full(3, origin), 10, 4)
    ref = window_features(u[:, :10], pr, pm, c, spec)
    for first in (0, 20):  # long history (cropped) and short history (NaN-padded on the left)
        got = request_features(
            units[:, first : origin + 1],
            price[:, first : origin + 5],
            promo[:, first : origin + 5],
            start + first,
            events[first : origin + 5],
            np.array([0, 1, 5]),
            np.array([2, -1, 0]),
            spec,
        )
        if first == 0:
            for k in ("past_features", "future_features", "series_scale"):
                np.testing.assert_allclose(got[k], ref[k], rtol=1e-6, err_msg=k)
        else:
            assert got["past_features"].shape == ref["past_features"].shape
            assert (got["past_features"][:, 1, :4] == 0).all()  # padded days are not observed
        assert got["store_ids"].tolist() == [1, 2, 0] and got["category_ids"].tolist() == [3, 0, 1]


@pytest.mark.parametrize("first", [0, 20])  # longer than the context (cropped) and shorter (NaN-padded)
def test_stored_windows_equal_request_features(first):
    """The gateway's per-panel preparation gives request_features' tensors exactly, series by series."""
    spec = _spec(n_stores=2, n_categories=3)
    units, price, promo, events = _panel()
    start, origin = np.datetime64("2024-03-01"), 25
    args = (units[:, first : origin + 1], price[:, first : origin + 5], promo[:, first : origin + 5], start + first)
    windows = StoredWindows.prepare(*args, events[first : origin + 5], spec)
    for row, (store, category) in enumerate([(0, 2), (1, -1), (5, 0)]):
        want = request_features(
            *(a[row : row + 1] for a in args[:3]),
            args[3],
            events[first : origin + 5],
            np.array([store]),
            np.array([category]),
            spec,
        )
        got = windows.features(row, store, category)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_future_covariates_never_reach_the_past_channels():
    spec = _spec()
    units, price, promo, events = _panel()
    cal = calendar_features(np.datetime64("2024-01-01") + np.arange(14), events[:14])
    a = window_features(units[:, :10], price[:, :14], promo[:, :14], cal, spec)
    price2, promo2 = price[:, :14].copy(), promo[:, :14].copy()
    price2[:, 10:] *= 3.0
    promo2[:, 10:] = 1.0
    b = window_features(units[:, :10], price2, promo2, cal, spec)
    np.testing.assert_array_equal(a["past_features"], b["past_features"])
    np.testing.assert_array_equal(a["series_scale"], b["series_scale"])
    assert not np.array_equal(a["future_features"], b["future_features"])


def test_shift_ids_maps_unknown_to_zero():
    assert shift_ids(np.array([0, 2, 3, -1]), 3).tolist() == [1, 3, 0, 0]


def test_errors_name_the_problem():
    spec = _spec()
    units, price, promo, events = _panel()
    with pytest.raises(ValueError, match="price and promo"):
        request_features(units, price, promo, np.datetime64("2024-01-01"), events, [0], [0], spec)
    with pytest.raises(ValueError, match="events must have 2 columns"):
        request_features(
            units[:, :26], price, promo, np.datetime64("2024-01-01"), events[:, :1], np.zeros(3), np.zeros(3), spec
        )


def test_module_imports_no_torch_and_no_training():
    code = (
        "import sys, importlib.util\n"
        "spec = importlib.util.spec_from_file_location('w', 'serving/forecast/features.py')\n"
        "m = sys.modules['w'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert 'torch' not in sys.modules and not any(k.startswith('training') for k in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
