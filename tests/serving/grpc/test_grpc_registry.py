"""The Storefront service is built from the capability registry; the proto must carry every endpoint's RPC."""

from __future__ import annotations

import dataclasses

import pytest

from serving.capabilities import discover
from serving.forecast.schemas import ForecastRequest
from serving.grpc import messages
from serving.grpc.server import rpcs
from serving.proto import storefront_pb2 as pb


def test_every_registered_endpoint_is_an_rpc_with_its_reply_message() -> None:
    table = rpcs(discover())
    assert sorted(table) == sorted(e.rpc for c in discover() for e in c.endpoints)
    assert {"Forecast", "Intent", "Rank", "Recommend"} <= set(table)
    assert table["Recommend"].reply is pb.RecommendResponse


def test_an_endpoint_missing_from_the_proto_is_refused() -> None:
    cap = discover()[0]
    bad = dataclasses.replace(cap, endpoints=(dataclasses.replace(cap.endpoints[0], rpc="Teleport"),))
    with pytest.raises(RuntimeError, match="RPC Teleport is not in"):
        rpcs([bad])


def test_generic_conversion_keeps_unset_optional_fields_out_and_nan_as_unknown() -> None:
    msg = pb.ForecastRequest(
        store_id=pb.Id(string_value="s1"),
        item_id=pb.Id(int_value=7),
        history=pb.SalesHistory(units=[1.0, float("nan"), 2.0], end_date="2024-03-01"),
    )
    body = messages.request_dict(msg, ForecastRequest)
    assert body == {"store_id": "s1", "item_id": 7, "history": {"units": [1.0, None, 2.0], "end_date": "2024-03-01"}}
    req = messages.to_request(msg, ForecastRequest)
    assert req.horizon == 28 and req.stock is None and req.history.price is None
