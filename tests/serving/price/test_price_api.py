"""/v1/price over the tiny price-sensitive TCN and its plans model (tests/serving/price/helpers.py): guard rails,
flags, invalid input, the known optimum, and one backend call per request: one row of K plans, or K rows of the
TCN where the plans model is not served, the same answer either way and equal to one-by-one answers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.price.features import priced_series
from serving.price.pipeline import plans_model
from serving.runtime.settings import Settings
from tests.serving.price import helpers as h

pytestmark = pytest.mark.timeout(60)

ELASTIC = {"store_id": "s1", "item_id": "B"}  # category 0: elasticity -2, current price 8
INELASTIC = {"store_id": "s1", "item_id": "A"}  # category 1: elasticity -0.5, current price 10


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = h.build(tmp_path_factory.mktemp("price"))
    with TestClient(create_app(Settings(**h.settings_kw(root)))) as c:
        yield c


def ask(client, **body):
    r = client.post("/v1/price", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_registered_with_the_forecast_components_and_model(client):
    caps = client.get("/v1/models").json()["capabilities"]
    models = {"tcn": 1, "tcn_plans": 1}
    assert caps["price"] == {"endpoints": ["/v1/price"], "models": models, "components": {"forecast": "ok"}}


def test_interior_optimum_is_found_and_the_elasticity_estimated(client):
    body = ask(client, **ELASTIC, unit_cost=3.0, max_change_pct=40)
    best = body["recommended"]
    assert body["current_price"] == 8.0 and body["flags"] == []
    assert abs(best["price"] / h.optimum(3.0, -2.0) - 1) < 0.02  # 6.00, within the grid's step
    assert abs(body["elasticity"] + 2.0) < 1e-3
    profits = [c["profit"] for c in body["candidates"]]
    assert best["profit"] == max(profits) and best["profit"] > body["current"]["profit"]
    prices = [c["price"] for c in body["candidates"]]
    assert prices == sorted(prices) and len(prices) == 21
    assert prices[0] == pytest.approx(4.8) and prices[-1] == pytest.approx(11.2)
    assert best["units_p10"] < best["units_p50"] < best["units_p90"]
    assert best["margin_pct"] == pytest.approx(100 * (best["price"] / 3.0 - 1), abs=1e-3)


def test_max_change_binds_and_is_flagged(client):
    body = ask(client, **INELASTIC, unit_cost=2.0, max_change_pct=5)  # inelastic: profit grows with price
    assert body["recommended"]["price"] == pytest.approx(10.5)
    assert body["ceiling_set_by"] == "max_change_pct" and "clipped_by_max_change_pct" in body["flags"]
    assert all(abs(c["change_pct"]) <= 5 + 1e-9 for c in body["candidates"])


def test_min_and_max_price_bound_the_candidates(client):
    body = ask(client, **INELASTIC, unit_cost=2.0, min_price=9.5, max_price=10.25)
    assert body["price_floor"] == 9.5 and body["price_ceiling"] == 10.25
    assert body["floor_set_by"] == "min_price" and body["ceiling_set_by"] == "max_price"
    assert all(9.5 <= c["price"] <= 10.25 for c in body["candidates"])
    assert body["recommended"]["price"] == 10.25 and "clipped_by_max_price" in body["flags"]
    body = ask(client, **ELASTIC, unit_cost=1.0, min_price=7.5, max_change_pct=40)  # optimum 2.0, far below
    assert body["recommended"]["price"] == 7.5 and body["flags"] == ["clipped_by_min_price"]


def test_margin_floor_binds(client):
    body = ask(client, **ELASTIC, unit_cost=3.0, max_change_pct=40, min_margin_pct=150)  # floor 7.5 > optimum 6
    assert body["floor_set_by"] == "min_margin_pct" and body["price_floor"] == pytest.approx(7.5)
    assert body["recommended"]["price"] == pytest.approx(7.5) and "clipped_by_min_margin_pct" in body["flags"]
    assert all(c["margin_pct"] >= 150 - 1e-9 for c in body["candidates"])


def test_guard_rails_that_leave_no_price_are_a_422_naming_the_rail(client):
    r = client.post("/v1/price", json={**ELASTIC, "unit_cost": 8.0, "min_margin_pct": 50})  # floor 12 > 9.6
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "min_margin_pct"]
    r = client.post("/v1/price", json={**ELASTIC, "unit_cost": 1.0, "max_price": 5.0})  # under 8 - 20 %
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "max_price"]


def test_outside_the_prices_seen_is_flagged(client):
    body = ask(client, **INELASTIC, unit_cost=2.0, max_change_pct=20)  # seen 7.0 .. 11.0; ceiling 12
    assert (body["training_price_low"], body["training_price_high"]) == pytest.approx((7.0, 11.0), abs=0.01)
    assert body["recommended"]["price"] == 12.0 and body["recommended"]["outside_training_range"]
    assert "outside_training_range" in body["flags"] and "extrapolation" in body["note"]
    inside = [c for c in body["candidates"] if c["price"] <= 11.0]
    assert inside and not any(c["outside_training_range"] for c in inside)


def test_stock_caps_expected_units(client):
    free = ask(client, **INELASTIC, unit_cost=2.0)
    capped = ask(client, **INELASTIC, unit_cost=2.0, stock=10)
    for c in capped["candidates"]:
        assert c["units_expected"] <= 10 + 1e-9 and c["units_p90"] <= 10 + 1e-9
    assert free["recommended"]["units_expected"] > 100  # 28 days x ~5 units
    assert "stock_limits_sales" in capped["flags"] and "stock_limits_sales" not in free["flags"]
    roomy = ask(client, **INELASTIC, unit_cost=2.0, stock=10_000)
    assert roomy["recommended"]["units_expected"] == pytest.approx(free["recommended"]["units_expected"], rel=1e-6)


def test_revenue_objective_and_horizon(client):
    low = ask(client, **ELASTIC, unit_cost=3.0, objective="revenue")  # revenue falls with price at e = -2
    assert low["recommended"]["price"] == pytest.approx(6.4) and low["objective"] == "revenue"
    week = ask(client, **ELASTIC, unit_cost=3.0, horizon_days=7)
    month = ask(client, **ELASTIC, unit_cost=3.0)
    assert week["horizon_days"] == 7
    assert week["current"]["units_expected"] == pytest.approx(month["current"]["units_expected"] / 4, rel=1e-5)


BAD = [
    ({**ELASTIC, "unit_cost": -1.0}, "unit_cost"),
    ({**ELASTIC}, "unit_cost"),
    ({**ELASTIC, "unit_cost": 1.0, "min_price": 9.0, "max_price": 8.0}, "max_price"),
    ({**ELASTIC, "unit_cost": 1.0, "horizon_days": 0}, "horizon_days"),
    ({**ELASTIC, "unit_cost": 1.0, "horizon_days": 29}, "horizon_days"),
    ({**ELASTIC, "unit_cost": 1.0, "objective": "volume"}, "objective"),
    ({**ELASTIC, "unit_cost": 1.0, "max_change_pct": 0}, "max_change_pct"),
    ({**ELASTIC, "unit_cost": 1.0, "stock": -2}, "stock"),
    ({**ELASTIC, "unit_cost": 1.0, "candidates": 1000}, "candidates"),
    ({**ELASTIC, "unit_cost": 1.0, "user_id": 7}, "user_id"),  # prices are never per user
    ({"store_id": "s2", "item_id": "B", "unit_cost": 1.0}, "item_id"),
    ({"store_id": "nowhere", "item_id": "B", "unit_cost": 1.0}, "store_id"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
def test_invalid_input_is_a_422_naming_the_field(client, body, field):
    r = client.post("/v1/price", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", field]


class CountingBackend:
    """Wraps the app's backend: records every call's (model, rows, plans); with `rows_only`, hides the plans model
    (the pipeline then asks the TCN, as where it is not served); with `one_by_one`, sends each row on its own."""

    def __init__(self, inner, rows_only: bool = False, one_by_one: bool = False):
        self.inner, self.rows_only, self.one_by_one, self.rows = inner, rows_only, one_by_one, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def models(self):
        return {k: v for k, v in self.inner.models().items() if not (self.rows_only and k == "tcn_plans")}

    async def infer(self, model, inputs):
        n = len(next(iter(inputs.values())))
        plans = inputs["future_plans"].shape[1] if "future_plans" in inputs else None
        self.rows.append((model, n, plans))
        if not self.one_by_one:
            return await self.inner.infer(model, inputs)
        parts = [await self.inner.infer(model, {k: v[i : i + 1] for k, v in inputs.items()}) for i in range(n)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _answer_with(client, backend, body):
    rt = client.app.state.runtime
    saved, rt.backend = rt.backend, backend(rt.backend)
    try:
        return ask(client, **body), rt.backend.rows
    finally:
        rt.backend = saved


@pytest.mark.parametrize("candidates", [20, 64])
def test_one_call_per_request_the_plans_and_rows_paths_give_one_answer(client, candidates):
    body = {**ELASTIC, "unit_cost": 3.0, "candidates": candidates, "stock": 60}
    k = candidates + 3  # the candidates, two probes and the current price
    plans, calls = _answer_with(client, CountingBackend, body)
    assert len(plans["candidates"]) == candidates and calls == [("tcn_plans", 1, k)]  # one row: the past once
    rows, calls = _answer_with(client, lambda b: CountingBackend(b, rows_only=True), body)
    assert calls == [("tcn", k, None)]  # one call of k TCN rows
    single, calls = _answer_with(client, lambda b: CountingBackend(b, rows_only=True, one_by_one=True), body)
    assert calls == [("tcn", k, None)]
    assert plans.pop("model_versions") == {"tcn_plans": 1}
    assert rows.pop("model_versions") == single.pop("model_versions") == {"tcn": 1}
    for other in (rows, single):
        _assert_same_answer(other, plans)


def _assert_same_answer(a: dict, b: dict) -> None:
    a, b = _flat({**a, "timings_ms": None}), _flat({**b, "timings_ms": None})
    assert a.keys() == b.keys()
    numbers = [k for k, v in b.items() if isinstance(v, float)]
    assert [a[k] for k in numbers] == pytest.approx([b[k] for k in numbers], rel=1e-6)
    assert {k: v for k, v in a.items() if k not in numbers} == {k: v for k, v in b.items() if k not in numbers}


def test_plans_model_is_used_only_from_the_forecasters_checkpoint():
    rt = SimpleNamespace(settings=SimpleNamespace(forecast_model="tcn"), models=lambda: {"tcn": 1, "tcn_plans": 1})
    ckpt = {"tcn": {"checkpoint_sha256": "a"}, "tcn_plans": {"checkpoint_sha256": "a"}}
    for manifest, want in (
        (None, "tcn_plans"),  # nothing says otherwise (manifest checks off)
        ({"models": ckpt}, "tcn_plans"),
        ({"models": {**ckpt, "tcn_plans": {"checkpoint_sha256": "b"}}}, None),  # an older export's weights
    ):
        rt.manifest = manifest
        assert plans_model(rt) == want
    rt.models = lambda: {"tcn": 1}
    assert plans_model(rt) is None


def _flat(value, key=""):
    """Nested JSON -> {path: leaf}, so pytest.approx compares every number."""
    if isinstance(value, dict):
        return {k: v for name, item in value.items() for k, v in _flat(item, f"{key}.{name}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{key}.{i}").items()}
    return {key: value}


def test_batched_rows_equal_single_row_forecasts(client):
    rt = client.app.state.runtime
    series = priced_series(rt.artifacts.need("forecast"), "s1", "B")
    prices = np.array([6.0, 7.0, 8.0, 9.5])

    async def both():
        batch = await rt.infer("tcn", series.inputs_at(prices))
        return batch, [await rt.infer("tcn", series.inputs_at(prices[i : i + 1])) for i in range(len(prices))]

    batch, single = client.portal.call(both)
    for i, one in enumerate(single):
        for name in ("quantiles", "mean"):
            np.testing.assert_allclose(batch[name][i], one[name][0], rtol=1e-6)
    assert batch["mean"][0].sum() > batch["mean"][-1].sum()  # lower price, more demand


def test_plans_inputs_are_the_rows_inputs_and_answer_alike(client):
    """One row of K plans carries exactly the K TCN rows' inputs (the past once), and the plans model answers
    each plan as the TCN answers its row."""
    rt = client.app.state.runtime
    series = priced_series(rt.artifacts.need("forecast"), "s1", "A")
    prices = np.array([6.0, 7.0, 8.0, 9.5, 12.0])
    rows, plans = series.inputs_at(prices), series.plans_at(prices)
    assert list(plans) == rt.models()["tcn_plans"].input_names
    np.testing.assert_array_equal(plans["future_plans"][0], rows["future_features"])
    for name in ("past_features", "series_scale", "store_ids", "category_ids"):
        assert plans[name].shape[0] == 1 and plans[name].dtype == rows[name].dtype
        np.testing.assert_array_equal(np.broadcast_to(plans[name], rows[name].shape), rows[name])

    async def both():
        return await rt.infer("tcn", rows), await rt.infer("tcn_plans", plans)

    by_rows, by_plans = client.portal.call(both)
    for name in ("quantiles", "mean"):
        assert by_plans[name].shape == (1, *by_rows[name].shape)
        np.testing.assert_allclose(by_plans[name][0], by_rows[name], rtol=1e-6)
