"""Every valid forecast input gives finite model inputs and finite advice; the bounds that make it so are enforced.

Property-based (hypothesis, SHOPSERVE_PROPERTY_EXAMPLES cases per property) over the request schema's own
limits: units and prices up to their maxima, unknown days, dates at both ends of the window, any stock,
lead time and service level."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from serving.forecast.answer import forecast_days, replenishment_advice
from serving.forecast.schemas import (
    FIRST_DATE,
    LAST_DATE,
    MAX_HORIZON,
    MAX_PRICE,
    MAX_UNITS,
    ForecastRequest,
    SalesHistory,
)
from tests.serving.forecast.test_source import _store

LEVELS = (0.1, 0.5, 0.9)
EXAMPLES = int(os.environ.get("SHOPSERVE_PROPERTY_EXAMPLES", "150"))  # the closing figures used 1,000
units = st.one_of(st.none(), st.floats(0, MAX_UNITS, allow_nan=False))
prices = st.one_of(st.none(), st.floats(1e-6, MAX_PRICE, allow_nan=False))


@st.composite
def histories(draw) -> SalesHistory:
    days = draw(st.lists(units, min_size=1, max_size=40))
    first = FIRST_DATE + dt.timedelta(days=len(days) - 1)
    end = draw(st.dates(min_value=first, max_value=LAST_DATE - dt.timedelta(days=MAX_HORIZON)))
    body = {"units": days, "end_date": end}
    if draw(st.booleans()):
        body["price"] = draw(st.lists(prices, min_size=len(days), max_size=len(days) + MAX_HORIZON))
    if draw(st.booleans()):
        body["promo"] = draw(st.lists(st.floats(0, 1), min_size=len(days), max_size=len(days)))
    return SalesHistory.model_validate(body)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), item=st.sampled_from([10, 11, 12, 99]))
def test_any_valid_history_gives_finite_model_inputs(history: SalesHistory, item: int) -> None:
    built = _store().build("s1", item, history)
    for name, arr in built.inputs.items():
        assert np.all(np.isfinite(np.asarray(arr, dtype=np.float64))), name
    assert built.first_date == history.end_date + dt.timedelta(days=1)


@st.composite
def quantile_rows(draw) -> np.ndarray:
    h = draw(st.integers(1, MAX_HORIZON))
    p50 = np.array(draw(st.lists(st.floats(0, MAX_UNITS), min_size=h, max_size=h)))
    spread = draw(st.floats(0, 3))
    return np.stack([p50 / (1 + spread), p50, p50 * (1 + spread)], axis=1)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    q=quantile_rows(),
    stock=st.floats(0, MAX_UNITS),
    on_order=st.floats(0, MAX_UNITS),
    lead=st.floats(0, 365),
    review=st.floats(0, 365),
    level=st.floats(0.001, 0.999),
)
def test_any_valid_stock_question_gives_finite_advice(q, stock, on_order, lead, review, level) -> None:
    req = ForecastRequest.model_validate(
        {
            "store_id": 1,
            "item_id": 2,
            "stock": stock,
            "on_order": on_order,
            "lead_time_days": lead,
            "review_days": review,
            "service_level": level,
        }
    )
    plan = replenishment_advice(q, LEVELS, req)
    days = forecast_days(q, LEVELS, MAX_HORIZON, dt.date(2024, 1, 1))
    assert plan is not None  # building the answer models validates every number as finite
    assert all(np.isfinite([d.p10, d.p50, d.p90]).all() for d in days)


@pytest.mark.parametrize(
    "history",
    [
        {"units": [1.0], "end_date": "9999-12-31"},  # the forecast days would overflow the calendar
        {"units": [1.0, 2.0], "end_date": "1900-01-01"},  # the first sent day would be before the window
        {"units": [1e39], "end_date": "2024-01-01"},  # past float32
        {"units": [1.0], "end_date": "2024-01-01", "price": [1e12]},
    ],
)
def test_inputs_outside_the_window_are_refused_naming_the_field(history) -> None:
    with pytest.raises(ValidationError) as err:
        ForecastRequest.model_validate({"store_id": 1, "item_id": 2, "history": history})
    assert err.value.errors()[0]["loc"][0] == "history"


@pytest.mark.parametrize("horizon", [True, 10.0, "10"])
def test_counts_are_json_integers(horizon) -> None:
    with pytest.raises(ValidationError, match="horizon"):
        ForecastRequest.model_validate({"store_id": 1, "item_id": 2, "horizon": horizon})
    with pytest.raises(ValidationError, match="stock"):
        ForecastRequest.model_validate({"store_id": 1, "item_id": 2, "stock": 1e39})
