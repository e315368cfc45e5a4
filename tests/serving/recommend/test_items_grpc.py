"""The UpsertItems and DeleteItems RPCs answer what POST /v1/items(/delete) answer, and their limits name the
field (INVALID_ARGUMENT)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from serving.grpc.messages import as_dict
from serving.proto import storefront_pb2 as pb
from tests.serving import gateway_helpers as g
from tests.serving.grpc.test_grpc_api import Gateway, Id, ids, running, status_of

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return g.build_gateway_files(tmp_path_factory.mktemp("items-grpc"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(built) -> AsyncIterator[Gateway]:
    async with running(built) as gateway:
        yield gateway


async def test_item_writes_equal_http_and_recommend_sees_them(gw):
    added = await gw.api.UpsertItems(
        pb.ItemsRequest(items=[pb.ItemUpdate(item_id=Id("g-new"), category_id=Id(3), price=5.0, in_stock=True)])
    )
    assert as_dict(added) == {"accepted": 1, "added": 1, "unknown": 0, "catalogue_version": 1, "catalogue_items": 41}
    http = await gw.http.post("/v1/items", json={"items": [{"item_id": "g-new", "in_stock": False}]})
    assert http.json() == {"accepted": 1, "added": 0, "unknown": 0, "catalogue_version": 2, "catalogue_items": 41}
    gone = await gw.api.DeleteItems(pb.DeleteItemsRequest(item_ids=ids("i4", "nope")))
    assert as_dict(gone) == {"accepted": 1, "added": 0, "unknown": 1, "catalogue_version": 3, "catalogue_items": 41}
    answer = await gw.api.Recommend(pb.RecommendRequest(user_id=Id("g1"), history=pb.IdList(ids=ids("i3")), k=39))
    assert {"g-new", "i4"}.isdisjoint(i.item_id.string_value for i in answer.items)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ItemsRequest(items=[pb.ItemUpdate(item_id=Id("brand-new"))]), "items.0.category_id"),
        (pb.ItemsRequest(items=[pb.ItemUpdate(item_id=Id("i1"), price=-2.0)]), "items.0.price"),
        (pb.ItemsRequest(items=[pb.ItemUpdate()]), "items.0.item_id"),
        (pb.ItemsRequest(), "items"),
    ],
)
async def test_bad_item_writes_are_invalid_argument_naming_the_field(gw, request_, field):
    code, details, _ = await status_of(gw.api.UpsertItems(request_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details
