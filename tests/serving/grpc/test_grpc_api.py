"""The gRPC API over the tiny ONNX models: a real grpc.aio server on a free port, started by the app's
lifespan beside HTTP. Every RPC answers what its HTTP route answers; bad input, overload, timeouts,
unexpected errors and health map to the right status codes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.app import begin_drain, create_app
from serving.grpc.messages import as_dict
from serving.grpc.server import SERVICE
from serving.proto import storefront_pb2 as pb
from serving.proto import storefront_pb2_grpc as pb_grpc
from serving.runtime.backends.embedded import EmbeddedBackend
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]

Health = health_pb2.HealthCheckResponse


@dataclasses.dataclass
class Gateway:
    app: FastAPI
    http: httpx.AsyncClient
    api: pb_grpc.StorefrontStub
    health: health_pb2_grpc.HealthStub
    backend: Any = None  # the backend the test passed in

    @property
    def rt(self) -> Any:
        return self.app.state.runtime


@contextlib.asynccontextmanager
async def running(root, backend=None, **settings: Any) -> AsyncIterator[Gateway]:
    base = {"model_repository": root / "model_repository", "artifacts": root / "artifacts", "execution_provider": "cpu"}
    app = create_app(Settings(**{**base, "grpc_port": 0, **settings}), backend=backend)
    async with g.serve(app) as http, grpc.aio.insecure_channel(f"127.0.0.1:{app.state.grpc.port}") as channel:
        yield Gateway(app, http, pb_grpc.StorefrontStub(channel), health_pb2_grpc.HealthStub(channel), backend)


class SlowBackend(EmbeddedBackend):
    """The real embedded backend behind an adjustable delay (or a failure), so requests pile up in the
    bounded queue or outlive their deadline without a big model."""

    def __init__(self, repo, delay: float = 0.0):
        super().__init__(str(repo), provider="cpu")
        self.delay, self.fail = delay, False

    async def infer(self, model, inputs):
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("secret internal detail")
        return await super().infer(model, inputs)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return g.build_gateway_files(tmp_path_factory.mktemp("grpc"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(built) -> AsyncIterator[Gateway]:
    async with running(built) as gateway:
        yield gateway


def Id(value: int | str) -> pb.Id:
    return pb.Id(string_value=value) if isinstance(value, str) else pb.Id(int_value=value)


def ids(*values: int | str) -> list[pb.Id]:
    return [Id(v) for v in values]


async def status_of(call) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    e = err.value
    return e.code(), e.details() or "", dict(e.trailing_metadata() or ())


# ---- the same answers as HTTP


def same_answer(grpc_answer, http_answer: httpx.Response) -> None:
    assert http_answer.status_code == 200, http_answer.text
    got, want = as_dict(grpc_answer), http_answer.json()
    assert set(got.pop("timings_ms")) == set(want.pop("timings_ms"))  # the stages, not their durations
    if "request_id" in want:  # each call its own
        assert got.pop("request_id") != want.pop("request_id")
    assert got == want  # floats too: both carry the same float64, JSON round-trips it exactly


async def test_recommend_equals_http(gw):
    cases = [
        (
            pb.RecommendRequest(user_id=Id(101), history=pb.IdList(ids=ids("i3", "i7", "i11")), k=5, candidates=20),
            {"user_id": 101, "history": ["i3", "i7", "i11"], "k": 5, "candidates": 20},
        ),
        (pb.RecommendRequest(user_id=Id(103), k=3), {"user_id": 103, "k": 3}),  # stored history
        (pb.RecommendRequest(user_id=Id("new"), k=3), {"user_id": "new", "k": 3}),  # popularity fallback
        (pb.RecommendRequest(user_id=Id(105), history=pb.IdList()), {"user_id": 105, "history": []}),
        (
            pb.RecommendRequest(
                user_id=Id("x"), history=pb.IdList(ids=ids("i38")), k=40, candidates=40, exclude_seen=False
            ),
            {"user_id": "x", "history": ["i38"], "k": 40, "candidates": 40, "exclude_seen": False},
        ),
    ]
    for message, body in cases:
        same_answer(await gw.api.Recommend(message), await gw.http.post("/v1/recommend", json=body))
    cold = await gw.api.Recommend(pb.RecommendRequest(user_id=Id("new"), k=3))
    assert cold.fallback and cold.fallback_reason == "unknown user without history"
    assert [as_dict(it.item_id) for it in cold.items] == ["i38", "i37", "i36"]


async def test_rank_and_intent_equal_http(gw):
    rank = pb.RankRequest(user_id=Id(104), history=ids("i1", "i2"), item_ids=ids("i5", "i9", "i20"))
    body = {"user_id": 104, "history": ["i1", "i2"], "item_ids": ["i5", "i9", "i20"]}
    same_answer(await gw.api.Rank(rank), await gw.http.post("/v1/rank", json=body))
    empty = pb.RankRequest(item_ids=ids("i5"))
    same_answer(await gw.api.Rank(empty), await gw.http.post("/v1/rank", json={"history": [], "item_ids": ["i5"]}))
    for message, body in [
        (pb.IntentRequest(text="where is my card"), {"text": "where is my card"}),
        (pb.IntentRequest(texts=["my card", "lost card"]), {"texts": ["my card", "lost card"]}),
    ]:
        answer = await gw.api.Intent(message)
        same_answer(answer, await gw.http.post("/v1/intent", json=body))
        assert all(len(r.top) == 3 for r in answer.results)
    labels = {"route": f"/{SERVICE}/Rank", "method": "GRPC", "status": "OK"}
    assert gw.rt.metrics.registry.get_sample_value("gateway_requests_total", labels) >= 2


async def test_forecast_unavailable_then_equals_http(gw):
    code, details, meta = await status_of(gw.api.Forecast(pb.ForecastRequest(store_id=Id(1), item_id=Id(42))))
    assert code == grpc.StatusCode.UNAVAILABLE and "forecast" in details
    assert meta["error-code"] == "unavailable"
    saved = gw.rt.artifacts
    gw.rt.artifacts = saved.with_parts(forecast=g.FakeSeries())
    try:
        message = pb.ForecastRequest(store_id=Id(1), item_id=Id(42), horizon=5, stock=2, lead_time_days=3)
        body = {"store_id": 1, "item_id": 42, "horizon": 5, "stock": 2, "lead_time_days": 3}
        answer = await gw.api.Forecast(message)
        same_answer(answer, await gw.http.post("/v1/forecast", json=body))
        assert answer.replenishment.status == "order_now" and answer.days[0].date == "2024-04-01"
        history = pb.SalesHistory(units=[1, math.nan, 2, 2], end_date="2024-01-10")  # NaN: an unknown day
        message = pb.ForecastRequest(store_id=Id("s9"), item_id=Id("x"), history=history, horizon=2)
        body = {
            "store_id": "s9",
            "item_id": "x",
            "history": {"units": [1, None, 2, 2], "end_date": "2024-01-10"},
            "horizon": 2,
        }
        answer = await gw.api.Forecast(message)
        same_answer(answer, await gw.http.post("/v1/forecast", json=body))
        assert not answer.HasField("replenishment") and answer.days[1].date == "2024-01-12"
        code, details, _ = await status_of(gw.api.Forecast(pb.ForecastRequest(store_id=Id(2), item_id=Id(42))))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("item_id: no stored sales")
    finally:
        gw.rt.artifacts = saved


# ---- invalid input -> INVALID_ARGUMENT naming the field

_S12 = pb.ForecastRequest(store_id=Id(1), item_id=Id(2))


def _forecast(**kw: Any) -> pb.ForecastRequest:
    message = pb.ForecastRequest()
    message.CopyFrom(_S12)
    for name, value in kw.items():
        if isinstance(value, pb.SalesHistory):
            message.history.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


INVALID = [
    ("Recommend", pb.RecommendRequest(user_id=Id("u"), k=101), "k: Input should be less than or equal to 100"),
    ("Recommend", pb.RecommendRequest(), "user_id: Field required"),
    ("Recommend", pb.RecommendRequest(user_id=Id("x" * 129)), "user_id: String should have at most 128 characters"),
    ("Recommend", pb.RecommendRequest(user_id=pb.Id()), "user_id: an id needs int_value or string_value"),
    ("Recommend", pb.RecommendRequest(user_id=Id("u"), k=20, candidates=10), "candidates: Value error, candidates"),
    (
        "Recommend",
        pb.RecommendRequest(user_id=Id("u"), history=pb.IdList(ids=[Id("i1"), pb.Id()])),
        "history.1: an id needs int_value or string_value",  # malformed; an unknown id is skipped (ignored)
    ),
    ("Rank", pb.RankRequest(), "item_ids: List should have at least 1 item"),
    ("Rank", pb.RankRequest(item_ids=ids("i1", 9)), "item_ids.1: unknown id 9"),
    ("Rank", pb.RankRequest(item_ids=ids("i1") * 1001), "item_ids: List should have at most 1000 items"),
    ("Intent", pb.IntentRequest(text=""), "text: String should have at least 1 character"),
    ("Intent", pb.IntentRequest(text="   "), "text: String should have at least 1 character"),
    ("Intent", pb.IntentRequest(), "request: Value error, give exactly one of `text` or `texts`"),
    ("Intent", pb.IntentRequest(text="a", texts=["b"]), "request: Value error, give exactly one"),
    ("Intent", pb.IntentRequest(texts=["a"] * 65), "texts: List should have at most 64 items"),
    ("Forecast", pb.ForecastRequest(store_id=Id(1)), "item_id: Field required"),
    ("Forecast", _forecast(stock=math.nan), "stock: Input should be a finite number"),
    ("Forecast", _forecast(horizon=29), "horizon: Input should be less than or equal to 28"),
    ("Forecast", _forecast(service_level=1.0), "service_level: Input should be less than 1"),
    (
        "Forecast",
        _forecast(history=pb.SalesHistory(units=[1, math.inf], end_date="2024-01-01")),
        "history.units.1: Input should be a finite number",
    ),
    ("Forecast", _forecast(history=pb.SalesHistory(units=[1], end_date="soon")), "history.end_date: Input should be"),
    (
        "Forecast",
        _forecast(history=pb.SalesHistory(units=[1], end_date="2024-01-01", price=[1, 2, 3] * 20)),
        "history.price: Value error, needs between",
    ),
]


@pytest.mark.parametrize(("rpc", "message", "expected"), INVALID, ids=[f"{r}-{e[:24]}" for r, _, e in INVALID])
async def test_invalid_input_is_invalid_argument_naming_the_field(gw, rpc, message, expected):
    code, details, meta = await status_of(getattr(gw.api, rpc)(message))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert expected in details and details.startswith(expected.split(":")[0] + ":")
    assert meta["error-code"] in ("validation_error", "invalid_request")


# ---- health


async def test_health_follows_readiness(gw):
    for service in ("", SERVICE):
        assert (await gw.health.Check(health_pb2.HealthCheckRequest(service=service))).status == Health.SERVING
    gw.rt.draining = True  # what Runtime.stop() sets first
    try:
        assert (await gw.health.Check(health_pb2.HealthCheckRequest(service=SERVICE))).status == Health.NOT_SERVING
    finally:
        gw.rt.draining = False
    assert (await gw.health.Check(health_pb2.HealthCheckRequest())).status == Health.SERVING
    code, _, _ = await status_of(gw.health.Check(health_pb2.HealthCheckRequest(service="nope")))
    assert code == grpc.StatusCode.NOT_FOUND


# ---- overload, deadlines, message size, unexpected errors (one slow gateway)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slow(built) -> AsyncIterator[Gateway]:
    backend = SlowBackend(built / "model_repository")
    settings = {"batch_max_size": 8, "queue_max_batches": 1, "batch_max_delay_ms": 0, "retry_after_s": 2}
    async with running(built, backend, request_timeout_s=0.5, max_body_bytes=4096, **settings) as gateway:
        yield gateway


async def test_full_queue_is_resource_exhausted(slow):
    slow.backend.delay = 0.2
    message = pb.RankRequest(history=ids("i1"), item_ids=ids("i2", "i3", "i4", "i5", "i6"))  # 5 of the 8 rows
    answers = await asyncio.gather(*(slow.api.Rank(message) for _ in range(6)), return_exceptions=True)
    codes = [a.code() if isinstance(a, grpc.aio.AioRpcError) else grpc.StatusCode.OK for a in answers]
    assert grpc.StatusCode.OK in codes and grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
    shed = next(a for a in answers if isinstance(a, grpc.aio.AioRpcError))
    assert dict(shed.trailing_metadata()) == {"error-code": "overloaded", "retry-after": "2"}


async def test_deadlines_are_deadline_exceeded(slow):
    slow.backend.delay = 0.8
    message = pb.RankRequest(item_ids=ids("i2"))
    code, details, meta = await status_of(slow.api.Rank(message))  # the gateway's own 0.5 s
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "0.5 s" in details and meta["error-code"] == "timeout"
    code, _, _ = await status_of(slow.api.Rank(message, timeout=0.1))  # the client's deadline
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    slow.backend.delay = 0.0
    await asyncio.sleep(0.8)  # the batch that started still runs to its end (its rows are abandoned)
    assert len((await slow.api.Rank(message, timeout=5)).items) == 1  # and the gateway serves on


async def test_message_over_the_body_limit_is_resource_exhausted(slow):
    code, _, _ = await status_of(slow.api.Intent(pb.IntentRequest(texts=["my card " * 200] * 3)))  # ~5 KB > 4 KB
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_unexpected_error_is_internal_without_internals(slow, caplog):
    backend = slow.backend
    backend.fail = True
    try:
        code, details, _ = await status_of(slow.api.Rank(pb.RankRequest(item_ids=ids("i2"))))
    finally:
        backend.fail = False
    assert code == grpc.StatusCode.INTERNAL and "secret" not in details and "Traceback" not in details
    rid = details.split("request id ")[1].split()[0]
    assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)


# ---- graceful stop


async def test_stop_finishes_running_calls_and_reports_not_serving(built):
    async with running(built, SlowBackend(built / "model_repository", delay=0.3), drain_timeout_s=5) as gw:
        watch = gw.health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == Health.SERVING
        call = asyncio.ensure_future(gw.api.Rank(pb.RankRequest(item_ids=ids("i2")), timeout=5))
        await asyncio.sleep(0.1)  # the call is running
        stopping = asyncio.ensure_future(gw.app.state.grpc.stop(5))
        assert (await watch.read()).status == Health.NOT_SERVING
        watch.cancel()
        assert len((await call).items) == 1  # the running call still gets its answer
        await stopping
        code, _, _ = await status_of(gw.api.Rank(pb.RankRequest(item_ids=ids("i2")), timeout=2))
        assert code == grpc.StatusCode.UNAVAILABLE  # no new calls after the stop


async def test_drain_answers_queued_calls_refuses_new_ones_and_ends_watches(built):
    """What SIGTERM starts (serving.app.begin_drain): every call held, queued in the batcher included, is answered;
    a new one gets UNAVAILABLE with error-code shutting_down and retry-after; health and /readyz say so at once."""
    backend = SlowBackend(built / "model_repository", delay=0.2)
    slow = {"batch_max_size": 2, "request_timeout_s": 30, "model_timeout_ms": 60_000}  # 5 batches of 2 calls: ~1 s
    async with running(built, backend, drain_timeout_s=10, **slow) as gw:
        watch = gw.health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == Health.SERVING
        one_row = pb.RankRequest(item_ids=ids("i2"))
        calls = [asyncio.ensure_future(gw.api.Rank(one_row, timeout=20)) for _ in range(10)]
        grpc_server = gw.app.state.grpc
        while grpc_server.servicer.inflight < len(calls):
            await asyncio.sleep(0.01)
        begin_drain(gw.app)
        assert (await gw.http.get("/readyz")).status_code == 503
        assert (await watch.read()).status == Health.NOT_SERVING
        check = await gw.health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert check.status == Health.NOT_SERVING
        code, details, meta = await status_of(gw.api.Rank(one_row, timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE and "shutting down" in details
        assert meta == {"error-code": "shutting_down", "retry-after": "1"}
        assert grpc_server.servicer.inflight > 0  # the refused call did not wait for the queued ones
        answers = await asyncio.gather(*calls)
        assert [len(a.items) for a in answers] == [1] * len(calls)
        await grpc_server.stop()  # the drain begun above: returns once the server stopped
        code, _, _ = await status_of(watch.read())  # the Watch stream ended instead of holding the stop
        assert code == grpc.StatusCode.UNAVAILABLE
