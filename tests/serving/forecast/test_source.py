"""StoredSales: the TCN's inputs from export's sales store or from a request's own history."""

import datetime as dt

import numpy as np
import pytest

from serving.contracts.errors import InvalidInput
from serving.forecast.features import FeatureSpec, request_features
from serving.forecast.schemas import SalesHistory
from serving.forecast.source import StoredSales

SPEC = FeatureSpec(context_days=10, horizon=4, scale_days=5, event_names=("sale",), n_stores=2, n_categories=3)
DAYS = 12  # stored days, more than context_days: the builder keeps the last 10
FIRST = dt.date(2024, 3, 1)
ORIGIN = FIRST + dt.timedelta(days=DAYS - 1)


def _store() -> StoredSales:
    rng = np.random.default_rng(0)
    n = 3  # series: (s1, 10), (s1, 11), (s2, 10)
    events = np.zeros((DAYS + SPEC.horizon, 1), np.int8)
    events[5, 0] = events[DAYS + 1, 0] = 1
    arrays = {
        "store_ids": np.array(["s1", "s2"]),
        "item_ids": np.array([10, 11, 12]),
        "series_store": np.array([0, 0, 1]),
        "series_item": np.array([0, 1, 0]),
        "series_category": np.array([2, 1, 2]),
        "units": rng.poisson(4.0, (n, DAYS)).astype(np.float32),
        "price": np.full((n, DAYS + SPEC.horizon), 5.0, np.float32),
        "promo": np.zeros((n, DAYS + SPEC.horizon), np.float32),
        "events": events,
        "event_names": np.array(["sale"]),
        "first_date": np.asarray(str(FIRST)),
        "origin_date": np.asarray(str(ORIGIN)),
    }
    arrays["price"][1, -SPEC.horizon :] = 4.0  # series 1 has a planned price cut
    return StoredSales(arrays, SPEC, (0.1, 0.5, 0.9))


def test_stored_series_uses_the_stored_window():
    src = _store()
    built = src.build("s1", 11, None)
    assert built.first_date == ORIGIN + dt.timedelta(days=1) and built.quantile_levels == (0.1, 0.5, 0.9)
    want = request_features(
        src.units[1:2], src.price[1:2], src.promo[1:2], np.datetime64(FIRST), src.events, [0], [1], SPEC
    )
    assert set(built.inputs) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(built.inputs[k], v)
    assert built.inputs["past_features"].shape == (1, SPEC.n_past, SPEC.context_days)
    assert built.inputs["future_features"].shape == (1, SPEC.n_future, SPEC.horizon)
    assert built.inputs["store_ids"].tolist() == [1] and built.inputs["category_ids"].tolist() == [2]


def test_string_form_of_an_integer_item_id_finds_the_series():
    src = _store()
    np.testing.assert_array_equal(
        src.build("s2", "10", None).inputs["past_features"], src.build("s2", 10, None).inputs["past_features"]
    )


@pytest.mark.parametrize(
    ("store", "item", "field"), [("s2", 11, "item_id"), ("nowhere", 10, "store_id"), ("s1", 99, "item_id")]
)
def test_unknown_series_without_history_names_the_field(store, item, field):
    with pytest.raises(InvalidInput) as e:
        _store().build(store, item, None)
    assert e.value.loc == ["body", field]


def test_history_equal_to_the_stored_days_gives_the_stored_inputs():
    src = _store()
    history = SalesHistory(
        units=src.units[0].tolist(), end_date=ORIGIN, price=src.price[0].tolist(), promo=src.promo[0].tolist()
    )
    got, want = src.build("s1", 10, history), src.build("s1", 10, None)
    for k in want.inputs:
        np.testing.assert_allclose(got.inputs[k], want.inputs[k], rtol=1e-6)
    assert got.first_date == want.first_date


def test_history_for_a_new_series_is_forecast_with_unknown_store_and_the_items_category():
    src = _store()
    history = SalesHistory(units=[1, None, 3], end_date=dt.date(2030, 1, 1), price=[2.0, 2.0, 2.5])
    built = src.build("new-store", 12, history)
    assert built.first_date == dt.date(2030, 1, 2)
    assert built.inputs["store_ids"].tolist() == [0] and built.inputs["category_ids"].tolist() == [0]
    assert src.build("s1", 10, history).inputs["category_ids"].tolist() == [3]  # known item: its category (+1)
    past = built.inputs["past_features"][0]
    observed = past[SPEC.past_channels.index("observed")]
    assert observed[-3:].tolist() == [1.0, 0.0, 1.0] and not observed[:-3].any()  # short history padded left
    # The unsent plan holds the last sent price, so the future log price ratio is the last day's.
    ratio = built.inputs["future_features"][0, SPEC.future_channels.index("log_price_ratio")]
    assert np.allclose(ratio, past[SPEC.past_channels.index("log_price_ratio"), -1])
