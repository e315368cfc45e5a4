"""The capability endpoints' fast path: the answers, errors and metrics FastAPI's routing gave, with less work."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.http.fastpath import FastPath
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g

BODY = {"history": ["i1"], "item_ids": ["i2", "i3"]}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return g.build_gateway_files(tmp_path_factory.mktemp("fastpath"))


@pytest.fixture(scope="module")
def client(built):
    s = Settings(model_repository=built / "model_repository", artifacts=built / "artifacts", execution_provider="cpu")
    with TestClient(create_app(s)) as c:
        yield c


def test_json_post_is_answered_without_fastapi_routing(client, monkeypatch):
    async def not_here(*a, **k):  # FastAPI behind the fast path: must not run for a plain JSON POST
        raise AssertionError("FastAPI's routing ran")

    monkeypatch.setattr(_fast_path(client.app), "app", not_here)
    r = client.post("/v1/rank", json=BODY)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert [i["item_id"] for i in r.json()["items"]] and "x-request-id" in r.headers
    monkeypatch.undo()
    metrics = client.get("/metrics").text
    assert 'gateway_requests_total{method="POST",route="/v1/rank",status="200"}' in metrics


def _app_ms(header: str) -> float:
    return float(re.fullmatch(r"app;dur=([0-9.]+)", header).group(1))


def test_answers_say_their_time_in_the_app(client):
    """server-timing `app;dur=` is the time inside the gateway: at least the stages the answer reports, and on
    error answers too (bench/ splits the client's latency by it)."""
    r = client.post("/v1/rank", json=BODY)
    app_ms = _app_ms(r.headers["server-timing"])
    assert app_ms >= sum(r.json()["timings_ms"].values()) - 1e-3
    bad = client.post("/v1/rank", json={"history": ["i1"], "item_ids": "i2"})
    assert bad.status_code == 422 and _app_ms(bad.headers["server-timing"]) > 0


def _fast_path(app) -> FastPath:
    layer = app.middleware_stack
    while not isinstance(layer, FastPath):
        layer = layer.app
    return layer


def test_invalid_field_is_the_same_422(client):
    r = client.post("/v1/rank", json={"history": ["i1"], "item_ids": "i2"})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_error" and body["detail"][0]["loc"] == ["body", "item_ids"]
    unknown = client.post("/v1/rank", json={**BODY, "surprise": 1})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "surprise"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"", {"content-type": "application/json"}),  # empty body
        (b"{not json", {"content-type": "application/json"}),  # does not parse
        (b"[1, 2]", {"content-type": "application/json"}),  # not an object
        (b'{"history": [], "item_ids": ["i2"]}', {"content-type": "text/plain"}),  # not declared JSON
    ],
)
def test_what_the_fast_path_does_not_take_gets_fastapis_answer(client, content, headers):
    r = client.post("/v1/rank", content=content, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    assert r.json()["detail"][0]["loc"][0] == "body"


def test_serving_errors_keep_their_shape(client):
    r = client.post("/v1/rank", json={"history": ["nope"], "item_ids": ["i2"]})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    assert "history" in str(r.json()["detail"])


def test_body_over_the_limit_is_413(built):
    s = Settings(
        model_repository=built / "model_repository",
        artifacts=built / "artifacts",
        execution_provider="cpu",
        max_body_bytes=1024,
    )
    with TestClient(create_app(s)) as c:
        big = {"history": ["i1"] * 400, "item_ids": ["i2"]}
        r = c.post("/v1/rank", json=big)
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

        def chunks():  # no Content-Length: the limit is met while the body is read
            yield b'{"history": ['
            for _ in range(300):
                yield b'"i1",'
            yield b'"i1"], "item_ids": ["i2"]}'

        r = c.post("/v1/rank", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
