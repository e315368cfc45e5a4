"""Bytes that are not the RPC's message are the client's INVALID_ARGUMENT, never an UNKNOWN with a traceback
in the log; an RPC no capability serves stays UNIMPLEMENTED; health is unchanged."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.app import create_app
from serving.grpc.server import SERVICE
from serving.proto import storefront_pb2 as pb
from serving.recommend.capability import CAPABILITY as RECOMMEND
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]


def _raw(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
    """A call that sends the given bytes as they are and hands back the answer's bytes."""
    return channel.unary_unary(f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None)


@contextlib.asynccontextmanager
async def _channel(root, **kw) -> AsyncIterator[grpc.aio.Channel]:
    settings = Settings(
        model_repository=root / "model_repository", artifacts=root / "artifacts", execution_provider="cpu", grpc_port=0
    )
    app = create_app(settings, **kw)
    async with g.serve(app), grpc.aio.insecure_channel(f"127.0.0.1:{app.state.grpc.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("wire")
    g.build_artifacts(root / "artifacts", g.build_repository(root / "model_repository"))
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def channel(built) -> AsyncIterator[grpc.aio.Channel]:
    async with _channel(built) as ch:
        yield ch


def _string_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a string, on the wire) holding `payload` as it is."""
    return bytes([number << 3 | 2, len(payload)]) + payload


GARBAGE = {
    "truncated varint": ("Rank", b"\x08\xff\xff\xff"),
    "bad wire type": ("Recommend", b"\x0f\x00\x00"),
    "field length past the end": ("Forecast", b"\x0a\x7f\x01"),
    "invalid UTF-8 in IntentRequest.text": ("Intent", _string_field(1, b"my card \xff\xfe")),
    "invalid UTF-8 in Id.string_value": ("Rank", _string_field(2, _string_field(2, b"\xc3\x28"))),
}


@pytest.mark.parametrize("method, data", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_is_invalid_argument_without_a_traceback(channel, method, data, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _raw(channel, method)(data, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert err.value.details() == f"request is not a valid {method}Request"
    assert dict(err.value.trailing_metadata())["error-code"] == "invalid_message"
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not noisy, [r.getMessage() for r in noisy]


async def test_valid_bytes_still_answer(channel):
    request = pb.RankRequest(history=[pb.Id(string_value="i1")], item_ids=[pb.Id(string_value="i2")])
    answer = pb.RankResponse.FromString(await _raw(channel, "Rank")(request.SerializeToString(), timeout=5))
    assert [i.item_id.string_value for i in answer.items] == ["i2"]
    with pytest.raises(grpc.aio.AioRpcError) as err:  # empty bytes = the empty message: a validation error
        await _raw(channel, "Rank")(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "item_ids" in err.value.details()


async def test_unknown_and_unserved_rpcs_are_unimplemented_and_health_unchanged(built):
    async with _channel(built, capabilities=[RECOMMEND]) as ch:  # a gateway serving Recommend and Rank only
        for method in ("Intent", "Forecast", "NoSuchMethod"):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _raw(ch, method)(pb.IntentRequest(text="my card").SerializeToString(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, (method, err.value)
        rank = pb.RankRequest(item_ids=[pb.Id(string_value="i2")]).SerializeToString()
        assert pb.RankResponse.FromString(await _raw(ch, "Rank")(rank, timeout=5)).items
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", SERVICE):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
