"""Experiments over the tiny models and a second DIN (`din_b`): answers carry their arm and the x-request-id, clicks
naming it are credited to the arm, GET /v1/experiments reports CTR with its Wilson interval, the shadow arm changes
and delays no answer and keeps its bound, a ledger that fails fails no answer, and two gateways on one Redis report
one set of totals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.app import create_app
from serving.contracts.experiments import ExperimentConfig
from serving.experiments.redis import RedisLedger
from serving.experiments.stats import wilson
from serving.runtime.backends.embedded import EmbeddedBackend
from serving.runtime.manifest import ManifestError
from serving.runtime.online_store.server import free_port
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

AB = {"name": "ranker", "arms": [{"name": "control"}, {"name": "b", "ranker": "din_b", "candidates": 39}]}
USERS = [*range(101, 112), "guest-1", "guest-2"]  # 101..111 have stored histories (100 has none)


@contextlib.asynccontextmanager
async def gateway(root, experiment: dict | None = AB, backend=None, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    base = {"model_repository": root / "model_repository", "artifacts": root / "artifacts", "execution_provider": "cpu"}
    settings = Settings(
        **{**base, "grpc_enabled": False, "experiment": json.dumps(experiment) if experiment else None, **kw}
    )
    app = create_app(settings, backend=backend)
    async with g.serve(app) as client:
        client.rt = app.state.runtime  # type: ignore[attr-defined]
        yield client


def experiments_of(client: httpx.AsyncClient) -> Any:
    return client.rt.services["experiments"]  # type: ignore[attr-defined]


async def recommend(client: httpx.AsyncClient, user, **kw) -> tuple[dict, httpx.Response]:
    r = await client.post("/v1/recommend", json={"user_id": user, "k": 5, **kw})
    assert r.status_code == 200, r.text
    return r.json(), r


async def click(client: httpx.AsyncClient, *events: tuple) -> None:
    body = [{"user_id": u, "item_id": i, "event_type": t, "request_id": rid} for u, i, t, rid in events]
    r = await client.post("/v1/events", json={"events": body})
    assert r.status_code == 200, r.text


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_answers_carry_their_arm_and_the_request_id_of_the_header(built):
    cfg = ExperimentConfig.model_validate(AB)
    async with gateway(built) as c:
        for user in USERS:
            body, r = await recommend(c, user)
            assert body["request_id"] == r.headers["x-request-id"] and len(body["request_id"]) == 16
            assert body["arm"] == cfg.assign(user).name
            if not body["fallback"]:  # the arm's ranker answered
                assert set(body["model_versions"]) == {"user_tower", "din" if body["arm"] == "control" else "din_b"}
            again, _ = await recommend(c, user)
            assert again["arm"] == body["arm"] and again["request_id"] != body["request_id"]
        assert {cfg.assign(u).name for u in USERS} == {"control", "b"}
        models = (await c.get("/v1/models")).json()["capabilities"]["experiments"]
        assert models == {
            "endpoints": ["/v1/experiments"],
            "models": {"din": 1, "din_b": 1},
            "components": {"experiment": "ok"},
        }
    async with gateway(built, experiment=None) as c:
        body, r = await recommend(c, 101)
        assert body["arm"] is None and body["request_id"] == r.headers["x-request-id"]
        assert (await c.get("/v1/experiments")).json() == {
            "experiment": None, "ledger": None, "confidence": 0.95, "arms": [], "shadow": None
        }  # fmt: skip


async def test_clicks_on_shown_items_are_credited_to_their_arm_with_ctr_and_interval(built):
    async with gateway(built) as c:
        shown = {"control": 0, "b": 0}
        clicks = {"control": 0, "b": 0}
        for n, user in enumerate(USERS):
            body, _ = await recommend(c, user)
            shown[body["arm"]] += len(body["items"])
            first, rid = body["items"][0]["item_id"], body["request_id"]
            events = [(user, first, "click", rid), (user, first, "click", rid)]  # a double click counts once
            events += [(user, "i39", "click", rid)] if "i39" not in [i["item_id"] for i in body["items"]] else []
            if n % 3 == 0:
                events += [(user, first, "buy", rid), (user, first, "click", "no-such-answer")]
            await click(c, *events)
            clicks[body["arm"]] += 1
        report = (await c.get("/v1/experiments", params={"confidence": 0.9})).json()
        assert report["experiment"] == "ranker" and report["ledger"] == "memory" and report["confidence"] == 0.9
        for arm in report["arms"]:
            name, n, x = arm["name"], arm["impressions"], arm["clicks"]
            assert (n, x, arm["carts"]) == (shown[name], clicks[name], 0)
            assert arm["ctr"] == pytest.approx(x / n)
            assert (arm["ctr_low"], arm["ctr_high"]) == pytest.approx(wilson(x, n, 0.9))
            assert arm["ctr_low"] < arm["ctr"] < arm["ctr_high"] and arm["weight"] == 0.5
            labels = {"experiment": "ranker", "arm": name}
            assert await metric(c, "gateway_experiment_impressions_total", **labels) == n
            assert await metric(c, "gateway_experiment_events_total", **labels, event_type="click") == x
        assert sum(a["buys"] for a in report["arms"]) == len(range(0, len(USERS), 3))
        assert await metric(c, "gateway_experiment_uncredited_events_total") >= len(USERS)  # doubles, i39, unknown


async def test_arms_without_overrides_answer_as_without_an_experiment_and_the_shadow_changes_nothing(built):
    same = {
        "name": "same",
        "arms": [{"name": "x"}, {"name": "y"}],
        "shadow": {"name": "s", "ranker": "din_b", "share": 1},
    }
    async with gateway(built, experiment=None) as plain, gateway(built, experiment=same) as shadowed:
        personal = 0
        for user in USERS:
            want, _ = await recommend(plain, user)
            got, _ = await recommend(shadowed, user)
            assert got["items"] == want["items"] and got["model_versions"] == want["model_versions"]
            assert got["fallback"] == want["fallback"] and got["degraded"] == want["degraded"] is False
            personal += not got["fallback"]
        await experiments_of(shadowed).idle()
        shadow = (await shadowed.get("/v1/experiments")).json()["shadow"]
        assert shadow["runs"] == personal > 0 and shadow["failed"] == shadow["dropped"] == shadow["degraded"] == 0
        assert 0 <= shadow["agreement"] < 1  # another ranker: another top 5
        assert 0 < shadow["latency_ms_p50"] <= shadow["latency_ms_p99"]
        labels = {"experiment": "same", "arm": "s"}
        assert await metric(shadowed, "gateway_shadow_runs_total", **labels, outcome="ok") == personal
        assert await metric(shadowed, "gateway_shadow_seconds_count", **labels) == personal
        # The shadow's stages are not the route's: the live requests alone are in the stage histogram.
        assert await metric(shadowed, "gateway_stage_seconds_count", route="recommend", stage="features") == len(USERS)


class SlowShadowRanker(EmbeddedBackend):
    """The real embedded backend, with `din_b` (the shadow's ranker) taking `delay` seconds a call."""

    def __init__(self, repo, delay: float):
        super().__init__(str(repo), provider="cpu")
        self.delay = delay

    async def infer(self, model, inputs):
        if model == "din_b":
            await asyncio.sleep(self.delay)
        return await super().infer(model, inputs)


async def test_a_slow_shadow_delays_no_answer_and_keeps_to_its_bound(built):
    slow = {
        "name": "slow",
        "arms": [{"name": "control"}],
        "shadow": {"name": "s", "ranker": "din_b", "share": 1, "max_inflight": 1},
    }
    backend = SlowShadowRanker(built / "model_repository", delay=0.5)
    async with gateway(built, experiment=slow, backend=backend, warmup=False) as c:
        personal = 0
        for user in range(101, 108):
            t0 = time.perf_counter()
            body, _ = await recommend(c, user)
            assert time.perf_counter() - t0 < 0.3  # the shadow's half second is not the shopper's
            personal += not body["fallback"]
        await experiments_of(c).idle()
        await recommend(c, "guest-3")  # a fallback answer starts no shadow
        shadow = (await c.get("/v1/experiments")).json()["shadow"]
        assert (shadow["runs"], shadow["dropped"]) == (1, personal - 1) and personal > 2
        assert 500 <= shadow["latency_ms_p50"] < 1500


async def test_a_failing_ledger_fails_no_answer_and_no_events_batch(built):
    async with gateway(built) as c:
        exp = experiments_of(c)
        await exp.ledger.close()
        exp.ledger = RedisLedger(f"redis://127.0.0.1:{free_port()}/0", "ranker", ttl_s=60, timeout_s=0.05)  # no server
        body, _ = await recommend(c, 101)
        assert body["arm"] and body["items"] and not body["degraded"]
        await click(c, (101, body["items"][0]["item_id"], "click", body["request_id"]))
        assert await metric(c, "gateway_experiment_ledger_errors_total", operation="shown") == 1
        assert await metric(c, "gateway_experiment_ledger_errors_total", operation="credit") == 1
        r = await c.get("/v1/experiments")
        assert r.status_code == 503 and r.json()["error"] == "experiment_ledger_unavailable"
        assert "127.0.0.1" not in r.text  # the address is the log's


async def test_two_gateways_on_one_redis_report_the_same_totals(built, redis_server):
    shared = {**AB, "name": f"shared-{uuid.uuid4().hex[:6]}"}
    store = {"online_store": redis_server.url}
    async with gateway(built, shared, **store) as one, gateway(built, shared, **store) as two:
        body, _ = await recommend(one, 103)
        other, _ = await recommend(two, 104)
        # Each answer's click reaches the other gateway, and the first one also its own (a retry): counted once.
        await click(two, (103, body["items"][0]["item_id"], "click", body["request_id"]))
        await click(one, (103, body["items"][0]["item_id"], "click", body["request_id"]))
        await click(one, (104, other["items"][1]["item_id"], "click", other["request_id"]))
        a, b = (await one.get("/v1/experiments")).json(), (await two.get("/v1/experiments")).json()
        assert a == b and a["ledger"] == "redis"
        assert sum(arm["impressions"] for arm in a["arms"]) == len(body["items"]) + len(other["items"])
        assert sum(arm["clicks"] for arm in a["arms"]) == 2


@pytest.mark.parametrize(
    ("query", "loc"), [({"confidence": 1.5}, ["query", "confidence"]), ({"confidence": "x"}, ["query", "confidence"]),
                       ({"confidence": "nan"}, ["query", "confidence"]), ({"arm": "b"}, ["query", "arm"])],
)  # fmt: skip
async def test_bad_queries_are_422_naming_the_parameter(built, query, loc):
    async with gateway(built) as c:
        r = await c.get("/v1/experiments", params=query)
        assert r.status_code == 422 and [d["loc"] for d in r.json()["detail"]] == [loc], r.text


@pytest.mark.parametrize(
    ("ranker", "why"),
    [("din_x", "ranker din_x is not a served model"), ("user_tower", "ranker user_tower does not take DIN's inputs")],
)
async def test_an_arm_ranker_that_is_not_a_served_din_stops_start_up(built, ranker, why):
    bad = {"name": "bad", "arms": [{"name": "control"}], "shadow": {"name": "s", "ranker": ranker, "share": 0.5}}
    with pytest.raises(ManifestError, match=f"experiment bad: {why}"):
        async with gateway(built, experiment=bad):
            pass
