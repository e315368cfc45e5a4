"""A model server that fails at run time: answers degrade (flagged) or say 503, and the breaker makes it cheap.

The failing backend below is a stand-in for an unreachable model server (it raises what the Triton backend
raises when its server is gone, with an internal address that must not reach the client); the real dead
and frozen Triton server is exercised by tests/serving/triton/test_chaos.py (triton marker).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.contracts.errors import Unavailable
from serving.runtime.backends.embedded import EmbeddedBackend
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g

SECRET = "Triton at 10.1.2.3:8001: StatusCode.UNAVAILABLE connection refused"


class FailingBackend(EmbeddedBackend):
    """The embedded backend, except that the models in `down` fail like an unreachable server."""

    def __init__(self, repo, down: set[str]):
        super().__init__(str(repo), provider="cpu")
        self.down, self.calls = down, {}

    async def infer(self, model, inputs):
        self.calls[model] = self.calls.get(model, 0) + 1
        if model in self.down:
            raise Unavailable("the model server is unreachable (inference)", retry_after=1, internal=SECRET)
        return await super().infer(model, inputs)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return g.build_gateway_files(tmp_path_factory.mktemp("degrade"))


def _client(built, down: set[str], **kw) -> tuple[TestClient, FailingBackend]:
    backend = FailingBackend(built / "model_repository", down)
    base = {"execution_provider": "cpu", "batching": False, "breaker_failures": 2, "breaker_reset_s": 60}
    s = Settings(model_repository=built / "model_repository", artifacts=built / "artifacts", **{**base, **kw})
    return TestClient(create_app(s, backend=backend)), backend


def test_ranker_down_answers_in_retrieval_order_flagged(built):
    client, _ = _client(built, {"din"})
    with client as c:
        hist = ["i3", "i7", "i11"]
        r = c.post("/v1/recommend", json={"user_id": 101, "history": hist, "k": 5, "candidates": 20})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["degraded"] is True and body["degraded_reason"].startswith("retrieval order: din unavailable")
        assert body["model_versions"] == {"user_tower": 1} and len(body["items"]) == 5
        scores = [it["score"] for it in body["items"]]
        assert scores == sorted(scores, reverse=True)  # FAISS similarity, best first
        assert "10.1.2.3" not in r.text and "StatusCode" not in r.text
        ok = c.post("/v1/recommend", json={"user_id": 101, "history": hist, "k": 5, "candidates": 20}).json()
        assert [it["item_id"] for it in ok["items"]] == [it["item_id"] for it in body["items"]]


def test_user_tower_down_answers_popular_items_of_recent_categories(built):
    client, _ = _client(built, {"user_tower"})
    with client as c:
        hist = ["i2", "i7", "i12"]  # all of category 2 (id % N_CATS)
        body = c.post("/v1/recommend", json={"user_id": "guest", "history": hist, "k": 4}).json()
        assert body["degraded"] is True and body["degraded_reason"].startswith("recent categories")
        cats = [int(it["item_id"][1:]) % g.N_CATS for it in body["items"]]
        assert cats == [2, 2, 2, 2]
        assert not {it["item_id"] for it in body["items"]} & set(hist)  # seen items stay out


def test_breaker_opens_and_then_costs_no_model_call(built):
    client, backend = _client(built, {"din"})
    with client as c:
        body = {"user_id": 101, "history": ["i3"], "k": 3, "candidates": 10}
        for _ in range(5):
            assert c.post("/v1/recommend", json=body).json()["degraded"] is True
        assert backend.calls["din"] == 2  # two failures opened it; the next three never reached the server
        ready = c.get("/readyz").json()
        assert ready["components"]["model:din"].startswith("circuit open")
        metrics = c.get("/metrics").text
        assert 'gateway_breaker_state{model="din"} 2.0' in metrics
        assert 'gateway_degraded_answers_total{fallback="retrieval_order",route="recommend"}' in metrics


def test_breaker_closes_again_after_the_server_recovers(built):
    client, backend = _client(built, {"din"}, breaker_reset_s=0.01)
    with client as c:
        body = {"user_id": 101, "history": ["i3"], "k": 3, "candidates": 10}
        for _ in range(2):
            c.post("/v1/recommend", json=body)
        backend.down.clear()
        time.sleep(0.02)
        # The first call after the reset starts the background probe (the backend's readiness) and still
        # fails fast; once the probe has passed, answers are whole again.
        assert c.post("/v1/recommend", json=body).json()["degraded"] is True
        time.sleep(0.05)
        again = c.post("/v1/recommend", json=body).json()
        assert again["degraded"] is False and again["model_versions"] == {"user_tower": 1, "din": 1}
        assert "model:din" in c.get("/readyz").json()["components"]
        assert c.get("/readyz").json()["components"]["model:din"] == "ok"


def test_intent_down_hands_every_message_to_a_human(built):
    client, _ = _client(built, {"intent_bert"})
    with client as c:
        r = c.post("/v1/intent", json={"texts": ["my card", "refund please"]})
        assert r.status_code == 200
        body = r.json()
        assert body["degraded"] is True and [x["handoff"] for x in body["results"]] == [True, True]
        assert body["results"][0]["intent"] is None and "10.1.2.3" not in r.text


def test_rank_and_forecast_say_503_with_retry_after_when_their_model_is_down(built):
    client, _ = _client(built, {"din", "tcn"})
    with client as c:
        r = c.post("/v1/rank", json={"history": ["i1"], "item_ids": ["i2", "i3"]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"] == "model_unavailable"
        assert "10.1.2.3" not in r.text
        rt = c.app.state.runtime
        rt.artifacts = rt.artifacts.with_parts(forecast=g.FakeSeries())
        r = c.post("/v1/forecast", json={"store_id": 1, "item_id": 42})
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text


def test_non_finite_model_output_never_reaches_an_answer(built):
    class NaNBackend(EmbeddedBackend):
        async def infer(self, model, inputs):
            out = await super().infer(model, inputs)
            return {k: np.full_like(v, np.nan) for k, v in out.items()} if model == "din" else out

    s = Settings(model_repository=built / "model_repository", artifacts=built / "artifacts", execution_provider="cpu")
    with TestClient(create_app(s, backend=NaNBackend(str(built / "model_repository"), provider="cpu"))) as c:
        r = c.post("/v1/recommend", json={"user_id": 101, "history": ["i3"], "k": 3})
        assert r.status_code == 200 and r.json()["degraded"] is True and "not finite" in r.json()["degraded_reason"]
        r = c.post("/v1/rank", json={"history": ["i1"], "item_ids": ["i2"]})
        assert r.status_code == 503 and "nan" not in r.text.lower()
