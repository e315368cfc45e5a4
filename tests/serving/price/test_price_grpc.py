"""The Price RPC answers what POST /v1/price answers (generic conversion by field name); bad input is
INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import grpc
import pytest

from serving.app import create_app
from serving.grpc.messages import as_dict
from serving.proto import storefront_pb2 as pb
from serving.proto import storefront_pb2_grpc as pb_grpc
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g
from tests.serving.price import helpers as h

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return h.build(tmp_path_factory.mktemp("price_grpc"))


async def test_price_rpc_matches_http_and_rejects_bad_input(root):
    app = create_app(Settings(**h.settings_kw(root), grpc_port=0))
    async with g.serve(app) as http, grpc.aio.insecure_channel(f"127.0.0.1:{app.state.grpc.port}") as channel:
        api = pb_grpc.StorefrontStub(channel)
        body = {"store_id": "s1", "item_id": "B", "unit_cost": 3.0, "max_change_pct": 40, "stock": 80}
        want = (await http.post("/v1/price", json=body)).json()
        msg = pb.PriceRequest(
            store_id=pb.Id(string_value="s1"),
            item_id=pb.Id(string_value="B"),
            unit_cost=3.0,
            max_change_pct=40,
            stock=80,
        )
        got = as_dict(await api.Price(msg, timeout=5))
        for answer in (want, got):
            answer.pop("timings_ms")
        assert got["recommended"] == pytest.approx(want["recommended"])
        assert got["flags"] == want["flags"] and len(got["candidates"]) == len(want["candidates"])
        assert got["elasticity"] == pytest.approx(want["elasticity"])

        bad = [
            (pb.PriceRequest(store_id=pb.Id(string_value="s1"), item_id=pb.Id(string_value="B")), "unit_cost"),
            (
                pb.PriceRequest(
                    store_id=pb.Id(string_value="s1"), item_id=pb.Id(string_value="B"), unit_cost=1, horizon_days=0
                ),
                "horizon_days",
            ),
            (
                pb.PriceRequest(
                    store_id=pb.Id(string_value="s1"),
                    item_id=pb.Id(string_value="B"),
                    unit_cost=1,
                    min_price=9,
                    max_price=8,
                ),
                "max_price",
            ),
        ]
        for request, field in bad:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await api.Price(request, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(f"{field}:"), err.value.details()
