"""The HTTP API over tiny ONNX models and artifacts: every endpoint, bad input, overload, timeout, errors."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.runtime.backends.embedded import EmbeddedBackend
from serving.runtime.manifest import ManifestError
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return g.build_gateway_files(tmp_path_factory.mktemp("gw"))


def settings_for(root, **kw) -> Settings:
    base = {"model_repository": root / "model_repository", "artifacts": root / "artifacts", "execution_provider": "cpu"}
    return Settings(**{**base, **kw})


@pytest.fixture(scope="module")
def client(built):
    with TestClient(create_app(settings_for(built, admin_token="s3cret"))) as c:
        yield c


def test_models_and_readiness_list_every_registered_capability(client):
    """Readiness and /v1/models come from the registry: every capability's components and models appear."""
    components = client.get("/readyz").json()["components"]
    caps = client.get("/v1/models").json()["capabilities"]
    assert {"forecast", "intent", "recommend"} <= set(caps)
    assert caps["recommend"]["endpoints"] == ["/v1/recommend", "/v1/rank", "/v1/items", "/v1/items/delete"]
    assert caps["recommend"]["models"] == {"user_tower": 1, "din": 1}
    assert caps["forecast"]["models"] == {"tcn": 1}
    assert caps["intent"]["models"] == {"intent_bert": 1}
    for cap in caps.values():
        for component, state in cap["components"].items():
            assert components[component] == state  # forecast included (it used to be left out of readiness)


# ---- numpy re-implementation of the tiny models, to check answers independently


def _np_user_vector(hist: np.ndarray) -> np.ndarray:
    e = g.item_table()
    cats = hist % g.N_CATS
    u = e[hist + 1].sum(0) / max(len(hist), 1) + 0.01 * (len(hist) > 0) * len(cats) + 0.05
    return u / np.linalg.norm(u)


def _np_din(hist: np.ndarray, cands: np.ndarray) -> np.ndarray:
    e = g.item_table()
    h = e[hist + 1].sum(0) / max(len(hist), 1)
    bias = np.linspace(-0.2, 0.2, g.N_CATS + 1)
    return 1 / (1 + np.exp(-(e[cands + 1] @ h + bias[cands % g.N_CATS + 1])))


def _index(ids: list[str]) -> np.ndarray:
    return np.array([int(i[1:]) for i in ids])


# ---- operations


def test_health_ready_models_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] and body["models"] == {"din": 1, "intent_bert": 1, "tcn": 1, "user_tower": 1}
    assert body["components"]["retriever"] == "ok" and "forecast" in body["components"]
    models = client.get("/v1/models").json()
    assert models["backend"] == "embedded"
    din = next(m for m in models["models"] if m["name"] == "din")
    assert len(din["sha256"]) == 64 and din["version"] == 1
    assert models["manifest"]["retrieval"]["item_count"] == g.N_ITEMS
    client.post("/v1/rank", json={"history": ["i1"], "item_ids": ["i2", "i3"]})
    client.post("/v1/rank", json={"history": "nope"})
    text = client.get("/metrics").text
    assert 'gateway_requests_total{method="POST",route="/v1/rank",status="200"}' in text
    assert 'gateway_errors_total{type="validation_error"}' in text
    assert 'gateway_stage_seconds_count{route="rank",stage="ranking"}' in text
    assert 'gateway_batch_rows_count{model="din"}' in text
    assert "gateway_queue_rows" in text and 'gateway_model_version{model="din"} 1.0' in text
    assert client.get("/docs").status_code == 200
    assert "/v1/recommend" in client.get("/openapi.json").json()["paths"]


# ---- inference endpoints


def test_recommend_known_user_matches_numpy_pipeline(client):
    hist = ["i3", "i7", "i11", "i7"]
    r = client.post("/v1/recommend", json={"user_id": 101, "history": hist, "k": 5, "candidates": 20})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] is False and body["model_versions"] == {"user_tower": 1, "din": 1}
    assert set(body["timings_ms"]) == {"features", "user_tower", "retrieval", "ranking"}
    got = _index([it["item_id"] for it in body["items"]])
    # Expected: FAISS top-20 by cosine, minus seen and out-of-stock, ranked by DIN, top 5.
    h = _index(hist)
    items = g.item_table()[1:]
    cos = (items / np.linalg.norm(items, axis=1, keepdims=True)) @ _np_user_vector(h)
    order = [i for i in np.argsort(-cos) if i not in set(h) and i != g.N_ITEMS - 1][:20]
    probs = _np_din(h, np.array(order))
    want = np.array(order)[np.argsort(-probs, kind="stable")][:5]
    assert got.tolist() == want.tolist()
    np.testing.assert_allclose([it["score"] for it in body["items"]], np.sort(probs)[::-1][:5], atol=1e-5)


def test_recommend_stored_history_and_fallbacks(client):
    stored = client.post("/v1/recommend", json={"user_id": 103, "k": 3}).json()
    assert stored["fallback"] is False and len(stored["items"]) == 3
    cold = client.post("/v1/recommend", json={"user_id": "someone-new", "k": 3}).json()
    assert cold["fallback"] is True and cold["model_versions"] == {}
    assert [it["item_id"] for it in cold["items"]] == ["i38", "i37", "i36"]  # most popular in stock (i39 is not)
    no_hist = client.post("/v1/recommend", json={"user_id": 100, "k": 2}).json()  # known, empty history
    assert no_hist["fallback"] is True and "known user" in no_hist["fallback_reason"]
    seen_ok = client.post("/v1/recommend", json={"user_id": "x", "history": ["i38"], "k": 40, "candidates": 40}).json()
    assert "i38" not in [it["item_id"] for it in seen_ok["items"]] and len(seen_ok["items"]) == g.N_ITEMS - 2
    with_seen = client.post(
        "/v1/recommend", json={"user_id": "x", "history": ["i38"], "k": 40, "candidates": 40, "exclude_seen": False}
    ).json()
    assert "i38" in [it["item_id"] for it in with_seen["items"]]


def test_rank_scores_and_order(client):
    r = client.post("/v1/rank", json={"user_id": 104, "history": ["i1", "i2"], "item_ids": ["i5", 9, "i20"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "item_ids", 1]  # 9 is not an item id
    r = client.post("/v1/rank", json={"history": ["i1", "i2"], "item_ids": ["i5", "i9", "i20"]})
    body = r.json()
    want = _np_din(np.array([1, 2]), np.array([5, 9, 20]))
    scores = {it["item_id"]: it["score"] for it in body["items"]}
    np.testing.assert_allclose([scores["i5"], scores["i9"], scores["i20"]], want, atol=1e-5)
    assert [it["score"] for it in body["items"]] == sorted(scores.values(), reverse=True)
    empty = client.post("/v1/rank", json={"history": [], "item_ids": ["i5"]}).json()
    np.testing.assert_allclose(empty["items"][0]["score"], _np_din(np.array([], int), np.array([5])), atol=1e-5)


def test_intent_single_and_batch(client):
    one = client.post("/v1/intent", json={"text": "where is my card"}).json()
    assert len(one["results"]) == 1 and one["model_versions"] == {"intent_bert": 1}
    res = one["results"][0]
    assert len(res["top"]) == 3 and res["top"][0]["intent"] == res["intent"]
    probs = [t["probability"] for t in res["top"]]
    assert probs == sorted(probs, reverse=True) and res["confidence"] == probs[0]
    assert res["handoff"] == (res["confidence"] < 0.5 or res["intent"] == "lost_card")
    texts = ["my card", "refund please", "balance", "lost card", "where is my card now please"]
    batch = client.post("/v1/intent", json={"texts": texts}).json()["results"]
    singles = [client.post("/v1/intent", json={"text": t}).json()["results"][0] for t in texts]
    for b, s in zip(batch, singles, strict=True):  # padding to the longest text changes nothing
        assert b["intent"] == s["intent"] and abs(b["confidence"] - s["confidence"]) < 1e-6


def test_forecast_unavailable_then_with_a_feature_source(client):
    r = client.post("/v1/forecast", json={"store_id": 1, "item_id": 42})
    assert r.status_code == 503 and "forecast" in r.json()["detail"]
    rt = client.app.state.runtime
    saved = rt.artifacts
    rt.artifacts = saved.with_parts(forecast=g.FakeSeries())
    try:
        r = client.post(
            "/v1/forecast", json={"store_id": 1, "item_id": 42, "horizon": 5, "stock": 2, "lead_time_days": 3}
        )
        body = r.json()
        assert r.status_code == 200, body
        assert len(body["days"]) == 5 and body["days"][0] == {"date": "2024-04-01", "p10": 1.5, "p50": 3.0, "p90": 4.5}
        plan = body["replenishment"]
        assert plan["status"] == "order_now" and plan["order_quantity"] > 0  # 2 units against ~9 over 3 days
        assert body["model_versions"] == {"tcn": 1}
        history = {"units": [1, None, 2, 2], "end_date": "2024-01-10"}
        r = client.post("/v1/forecast", json={"store_id": "s9", "item_id": "x", "history": history, "horizon": 2})
        assert r.json()["days"][1]["date"] == "2024-01-12" and r.json()["replenishment"] is None
        r = client.post("/v1/forecast", json={"store_id": 2, "item_id": 42})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "item_id"]
    finally:
        rt.artifacts = saved


# ---- bad input -> 422 naming the field

BAD = [
    ("/v1/recommend", {}, "user_id"),
    ("/v1/recommend", {"user_id": True}, "user_id"),
    ("/v1/recommend", {"user_id": ""}, "user_id"),
    ("/v1/recommend", {"user_id": "u", "k": 0}, "k"),
    ("/v1/recommend", {"user_id": "u", "k": 101}, "k"),
    ("/v1/recommend", {"user_id": "u", "k": 20, "candidates": 10}, "candidates"),
    ("/v1/recommend", {"user_id": "u", "candidates": 5000}, "candidates"),
    ("/v1/recommend", {"user_id": "u", "history": ["i1"] * 501}, "history"),
    ("/v1/recommend", {"user_id": "u", "history": ["i1", ""]}, "history"),  # malformed; an unknown id is skipped
    ("/v1/recommend", {"user_id": "u", "history": [1.5]}, "history"),
    ("/v1/recommend", {"user_id": "u", "kk": 3}, "kk"),
    ("/v1/recommend", {"user_id": "x" * 129}, "user_id"),
    ("/v1/rank", {"history": [], "item_ids": []}, "item_ids"),
    ("/v1/rank", {"item_ids": ["i1"]}, "history"),
    ("/v1/rank", {"history": [], "item_ids": ["i1"] * 1001}, "item_ids"),
    ("/v1/rank", {"history": [{"a": 1}], "item_ids": ["i1"]}, "history"),
    ("/v1/intent", {}, "text"),
    ("/v1/intent", {"text": "a", "texts": ["b"]}, "text"),
    ("/v1/intent", {"text": "   "}, "text"),
    ("/v1/intent", {"text": "a" * 2001}, "text"),
    ("/v1/intent", {"texts": []}, "texts"),
    ("/v1/intent", {"texts": ["a"] * 65}, "texts"),
    ("/v1/intent", {"texts": ["ok", 3]}, "texts"),
    ("/v1/forecast", {"store_id": 1}, "item_id"),
    ("/v1/forecast", {"store_id": 1, "item_id": 2, "horizon": 29}, "horizon"),
    ("/v1/forecast", {"store_id": 1, "item_id": 2, "stock": -1}, "stock"),
    ("/v1/forecast", {"store_id": 1, "item_id": 2, "service_level": 1.0}, "service_level"),
    ("/v1/forecast", {"store_id": 1, "item_id": 2, "lead_time_days": 400}, "lead_time_days"),
    ("/v1/forecast", {"store_id": 1, "item_id": 2, "history": {"units": [], "end_date": "2024-01-01"}}, "units"),
    ("/v1/forecast", {"store_id": 1, "item_id": 2, "history": {"units": [1], "end_date": "soon"}}, "end_date"),
    ("/v1/forecast", {"store_id": 1, "item_id": 2, "history": {"units": [-2], "end_date": "2024-01-01"}}, "units"),
    (
        "/v1/forecast",
        {"store_id": 1, "item_id": 2, "history": {"units": [1, 2], "end_date": "2024-01-01", "price": [1.0]}},
        "price",
    ),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD, ids=[f"{p}-{f}-{i}" for i, (p, _, f) in enumerate(BAD)])
def test_bad_input_is_422_naming_the_field(client, path, body, field):
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    payload = r.json()
    assert payload["error"] in ("validation_error", "invalid_request")
    assert any(field in [str(x) for x in e["loc"]] or f"`{field}`" in e["msg"] for e in payload["detail"]), payload


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user_id": "u", "k": NaN}',
        b'{"user_id": "u", "k": Infinity}',
        b'{"user_id": "u",',
        b"\xff\xfe",
    ],
)
def test_non_json_and_non_finite_numbers_are_422(client, raw):
    r = client.post("/v1/recommend", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


def test_non_finite_float_fields_are_rejected(client):
    raw = json.dumps({"store_id": 1, "item_id": 2, "stock": float("nan")}).encode()  # Python writes NaN
    r = client.post("/v1/forecast", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "stock"


def test_oversized_body_is_413(built):
    with TestClient(create_app(settings_for(built, max_body_bytes=1024))) as c:
        big = {"user_id": "u", "history": ["i1"] * 400}
        r = c.post("/v1/recommend", json=big)
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

        def chunks():  # no Content-Length: the limit applies while reading
            yield b'{"user_id": "u", "history": ['
            for _ in range(400):
                yield b'"i1", '
            yield b'"i1"]}'

        r = c.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/v1/recommend", json={"user_id": "u"}).status_code == 200


def test_unknown_route_and_method(client):
    assert client.get("/v1/nope").json()["error"] == "not_found"
    assert client.get("/v1/recommend").status_code == 405


# ---- missing models and artifacts: 503, never made-up answers


def test_missing_model_and_artifacts_answer_503(tmp_path):
    repo = tmp_path / "model_repository"
    g.add_user_tower(repo)
    g.add_intent(repo)
    g.build_artifacts(tmp_path / "artifacts", manifest=False)
    with TestClient(create_app(settings_for(tmp_path))) as c:
        r = c.post("/v1/rank", json={"history": [], "item_ids": ["i1"]})
        assert r.status_code == 503 and r.json() == {"error": "model_not_loaded", "detail": r.json()["detail"]}
        assert "din" in r.json()["detail"]
        assert c.post("/v1/intent", json={"text": "my card"}).status_code == 200
    empty = tmp_path / "empty"
    with TestClient(create_app(Settings(model_repository=empty, artifacts=empty))) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "make models" in ready.json()["components"]["models"]
        assert ready.headers["retry-after"] == "1"
        r = c.post("/v1/intent", json={"text": "hello"})
        assert r.status_code == 503 and "intent not available" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200


def test_manifest_mismatch_refuses_to_start(tmp_path):
    repo = g.build_repository(tmp_path / "model_repository")
    g.build_artifacts(tmp_path / "artifacts", repo)
    with open(tmp_path / "artifacts" / "features" / "items.npz", "ab") as f:
        f.write(b"tampered")
    app = create_app(settings_for(tmp_path))
    with pytest.raises(ManifestError, match=r"features/items.npz: size"), TestClient(app):
        pass


# ---- overload, timeout, unexpected errors


class SlowBackend(EmbeddedBackend):
    """The embedded backend with a fixed delay per model call, or an unexpected failure."""

    def __init__(self, repo, delay: float = 0.0, fail: bool = False):
        super().__init__(str(repo), provider="cpu")
        self.delay, self.fail = delay, fail

    async def infer(self, model, inputs):
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("secret internal detail")
        return await super().infer(model, inputs)


async def _run(app, coro_fn):
    async with g.serve(app) as c:
        return await coro_fn(c)


@pytest.mark.asyncio
async def test_saturated_queue_answers_503_with_retry_after(built):
    s = settings_for(built, batch_max_size=8, queue_max_batches=1, batch_max_delay_ms=0, retry_after_s=2)
    app = create_app(s, backend=SlowBackend(built / "model_repository", delay=0.3))
    body = {"history": ["i1"], "item_ids": ["i2", "i3", "i4", "i5", "i6"]}

    async def go(c):
        return await asyncio.gather(*(c.post("/v1/rank", json=body) for _ in range(8)))

    answers = await _run(app, go)
    codes = sorted(r.status_code for r in answers)
    assert 200 in codes and 503 in codes, codes
    shed = next(r for r in answers if r.status_code == 503)
    assert shed.headers["retry-after"] == "2" and shed.json()["error"] == "overloaded"


@pytest.mark.asyncio
async def test_slow_model_answers_504_and_gateway_stays_up(built):
    s = settings_for(built, request_timeout_s=0.1)
    app = create_app(s, backend=SlowBackend(built / "model_repository", delay=0.5))

    async def go(c):
        slow = await c.post("/v1/rank", json={"history": [], "item_ids": ["i2"]})
        health = await c.get("/healthz")
        return slow, health

    slow, health = await _run(app, go)
    assert slow.status_code == 504 and slow.json()["error"] == "timeout"
    assert health.status_code == 200


def test_unexpected_error_is_500_without_internals(built):
    app = create_app(settings_for(built), backend=SlowBackend(built / "model_repository", fail=True))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/rank", json={"history": [], "item_ids": ["i2"]})
        assert r.status_code == 500
        assert r.json()["error"] == "internal_error"
        assert "secret" not in r.text and "Traceback" not in r.text
        assert r.headers["x-request-id"] in r.json()["detail"]
        assert c.get("/healthz").status_code == 200


# ---- admin reload


def test_admin_reload_needs_the_token(client, built):
    assert client.post("/admin/reload").status_code == 403
    assert client.post("/admin/reload", headers={"x-admin-token": "wrong"}).status_code == 403
    r = client.post("/admin/reload", headers={"x-admin-token": "s3cret"})
    assert r.status_code == 200 and r.json()["changed"] == {}
    with TestClient(create_app(settings_for(built))) as c:  # no token configured: no endpoint
        assert c.post("/admin/reload", headers={"x-admin-token": "s3cret"}).status_code == 404


def test_models_with_user_features(tmp_path):
    """A tower and ranker that take user attributes: known users get theirs, unknown users zeros (unknown),
    and a known user without history is personalised through them instead of falling back."""
    repo = tmp_path / "model_repository"
    g.add_user_tower(repo, user_features=2)
    g.add_din(repo, user_features=2)
    g.build_artifacts(tmp_path / "artifacts", repo)
    users = np.load(tmp_path / "artifacts" / "features" / "users.npz")
    codes = users["user_features"][5] + 1  # user 105, as the model sees them
    with TestClient(create_app(settings_for(tmp_path))) as c:
        body = {"history": ["i1"], "item_ids": ["i2"]}
        known = c.post("/v1/rank", json={**body, "user_id": 105}).json()["items"][0]["score"]
        unknown = c.post("/v1/rank", json={**body, "user_id": "nobody"}).json()["items"][0]["score"]
        shift = float(np.array([0.0, 0.5, -0.5, 1.0])[codes].sum())
        logit = np.log(unknown / (1 - unknown))
        np.testing.assert_allclose(known, 1 / (1 + np.exp(-(logit + shift))), atol=1e-5)
        personal = c.post("/v1/recommend", json={"user_id": 100, "k": 3}).json()  # known, empty history
        assert personal["fallback"] is False and len(personal["items"]) == 3


def test_a_blank_admin_token_disables_the_endpoint(built):
    with TestClient(create_app(settings_for(built, admin_token=""))) as c:
        assert c.post("/admin/reload", headers={"x-admin-token": ""}).status_code == 404
    with TestClient(create_app(settings_for(built, admin_token="  "))) as c:
        assert c.post("/admin/reload", headers={"x-admin-token": "  "}).status_code == 404


def test_an_unreadable_index_is_named_with_the_manifest_check_off(tmp_path):
    repo = g.build_repository(tmp_path / "model_repository")
    g.build_artifacts(tmp_path / "artifacts", repo)
    index = tmp_path / "artifacts" / "retrieval" / "items.faiss"
    index.write_bytes(b"not an index" * 10)
    app = create_app(settings_for(tmp_path, manifest_check="off"))
    with pytest.raises(ValueError, match=r"items.faiss: cannot be loaded"), TestClient(app):
        pass
