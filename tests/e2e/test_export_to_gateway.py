"""Export -> gateway, end to end: tiny trained-shape checkpoints go through `python -m export`, and the gateway
serves what it wrote (repository, FAISS index, feature tables, sales store, manifest) on the embedded backend.

The forecast is checked against an independent path: the TCN's ONNX file run directly on features built
from the generated sales panel itself, so the stored sales and the gateway's feature assembly must agree
with what training sees."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import onnxruntime as ort
import pytest
import pytest_asyncio

from serving.app import create_app
from serving.forecast.features import FeatureSpec, request_features
from serving.runtime.settings import Settings
from tests.export.tiny_pipeline import export_tiny
from tests.serving import gateway_helpers as g
from training.data import behavior, sales

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]


def _py(value: object) -> object:
    """numpy scalar -> JSON-ready Python value (ids may be int64 or str)."""
    return value.item() if isinstance(value, np.generic) else value


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    args, _ = export_tiny(tmp_path_factory.mktemp("e2e"))
    return args


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(exported):
    settings = Settings(
        model_repository=exported.repo,
        artifacts=exported.artifacts,
        require_manifest=True,
        grpc_enabled=False,
        _env_file=None,
    )
    async with g.serve(create_app(settings)) as c:
        yield c


async def test_ready_and_every_model_listed(client):
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    models = (await client.get("/v1/models")).json()
    assert {"user_tower", "din", "tcn"} <= {m["name"] for m in models["models"]}


async def test_recommend_known_user_excludes_seen_and_ranks(client):
    log, _ = behavior.generate(behavior.PROFILES["tiny"], seed=0)
    user = _py(log.user_ids[3])
    history = [_py(log.catalogue.item_ids[i]) for i in log.item[(log.user == 3) & (log.event >= 1)][-5:]]
    r = await client.post("/v1/recommend", json={"user_id": user, "history": history, "k": 7, "candidates": 30})
    body = r.json()
    assert r.status_code == 200, body
    got = [i["item_id"] for i in body["items"]]
    assert len(got) == 7 and not set(got) & set(history) and not body["fallback"]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and set(body["model_versions"]) == {"user_tower", "din"}
    # /v1/rank scores the same items with the same history identically
    ranked = (await client.post("/v1/rank", json={"user_id": user, "history": history, "item_ids": got})).json()
    assert [i["item_id"] for i in ranked["items"]] == got
    np.testing.assert_allclose([i["score"] for i in ranked["items"]], scores, rtol=1e-5)
    cold = (await client.post("/v1/recommend", json={"user_id": "never-seen", "k": 3})).json()
    assert cold["fallback"] and len(cold["items"]) == 3


async def test_stored_forecast_equals_the_model_on_the_panels_own_features(client, exported):
    panel = sales.generate(sales.PROFILES["tiny"], seed=0)
    row = 5
    store_id, item_id = _py(panel.store_ids[panel.store[row]]), _py(panel.item_ids[panel.item[row]])
    r = await client.post("/v1/forecast", json={"store_id": store_id, "item_id": item_id, "stock": 3})
    body = r.json()
    assert r.status_code == 200, body
    days = body["days"]
    assert len(days) == 5 and all(d["p10"] <= d["p50"] <= d["p90"] for d in days)
    last = panel.start_date + np.timedelta64(panel.n_days - 1, "D")
    assert days[0]["date"] == str(last + np.timedelta64(1, "D"))
    assert body["replenishment"]["status"] in {"order_now", "watch", "ok"}

    # Independent path: features from the SalesPanel (plan: last price held, no promotion, real calendar).
    manifest = json.loads((exported.artifacts / "manifest.json").read_text())
    spec = FeatureSpec.from_dict(manifest["forecast"]["feature_spec"])
    h = spec.horizon
    price = panel.price[row : row + 1]
    plan = np.full((1, h), price[0][np.isfinite(price[0])][-1])
    future, _ = sales.calendar_events(panel.start_date + np.timedelta64(panel.n_days, "D"), h)
    inputs = request_features(
        panel.units[row : row + 1],
        np.concatenate([price, plan], axis=1),
        np.concatenate([panel.promo[row : row + 1], np.zeros((1, h))], axis=1),
        panel.start_date,
        np.concatenate([panel.events, future], axis=0),
        panel.store[row : row + 1],
        panel.category[row : row + 1],
        spec,
    )
    session = ort.InferenceSession(str(exported.repo / "tcn" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    want = session.run(["quantiles"], inputs)[0][0]  # [H, 3]
    got = np.array([[d["p10"], d["p50"], d["p90"]] for d in days])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


async def test_forecast_from_a_sent_history_for_a_new_series(client):
    units = [3, 0, 5, None, 4, 2, 6] * 4
    history = {"units": units, "end_date": "2031-06-30", "price": [9.5] * len(units)}
    r = await client.post("/v1/forecast", json={"store_id": "popup", "item_id": "new-sku", "history": history})
    body = r.json()
    assert r.status_code == 200, body
    assert body["days"][0]["date"] == str(dt.date(2031, 7, 1))
    unknown = await client.post("/v1/forecast", json={"store_id": "popup", "item_id": "new-sku"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "store_id"]
