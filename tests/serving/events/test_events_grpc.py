"""The `Events` RPC answers what POST /v1/events answers, its limits name the field, and a Recommend over gRPC
reads the events at once (ignored history ids counted)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from serving.grpc.messages import as_dict
from serving.proto import storefront_pb2 as pb
from tests.serving import gateway_helpers as g
from tests.serving.grpc.test_grpc_api import Gateway, Id, ids, running, same_answer, status_of

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return g.build_gateway_files(tmp_path_factory.mktemp("events-grpc"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(built) -> AsyncIterator[Gateway]:
    async with running(built) as gateway:
        yield gateway


def event(user, item, kind, **kw) -> pb.Event:
    return pb.Event(user_id=Id(user), item_id=Id(item), event_type=kind, **kw)


async def test_events_equal_http_and_recommend_reads_them(gw):
    batch = [event("g1", "i3", "click", timestamp=1.7e9, request_id="r-1"), event("g1", "new", "view")]
    answer = await gw.api.Events(pb.EventsRequest(events=batch))
    assert as_dict(answer) == {"accepted": 2, "unknown_items": 1}
    http = await gw.http.post("/v1/events", json={"events": [{"user_id": "g2", "item_id": "i8", "event_type": "cart"}]})
    assert http.json() == {"accepted": 1, "unknown_items": 0}
    online = await gw.api.Recommend(pb.RecommendRequest(user_id=Id("g1"), k=5))
    assert not online.fallback
    same_answer(online, await gw.http.post("/v1/recommend", json={"user_id": "g1", "k": 5}))
    explicit = await gw.api.Recommend(pb.RecommendRequest(user_id=Id("g1"), history=pb.IdList(ids=ids("i3")), k=5))
    assert list(explicit.items) == list(online.items)
    ignored = await gw.api.Recommend(pb.RecommendRequest(user_id=Id("g1"), history=pb.IdList(ids=ids("i3", "zz")), k=5))
    assert ignored.ignored == 1 and list(ignored.items) == list(online.items)


INVALID = [
    (pb.EventsRequest(), "events: List should have at least 1 item"),
    (pb.EventsRequest(events=[event(1, "i1", "like")]), "events.0.event_type: Input should be 'view', 'click'"),
    (pb.EventsRequest(events=[pb.Event(item_id=Id("i1"), event_type="view")]), "events.0.user_id: Field required"),
    (pb.EventsRequest(events=[event(1, "i1", "view", timestamp=-1)]), "events.0.timestamp: Input should be greater"),
    (pb.EventsRequest(events=[event(1, "i1", "view")] * 1001), "events: List should have at most 1000 items"),
]


@pytest.mark.parametrize(("message", "expected"), INVALID, ids=[e[:24] for _, e in INVALID])
async def test_invalid_events_are_invalid_argument_naming_the_field(gw, message, expected):
    code, details, _ = await status_of(gw.api.Events(message))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(expected), details
