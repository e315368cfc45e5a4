"""gRPC mirrors the experiment: `Recommend` answers carry their arm and request id, `Events` credit them, the
`Experiments` RPC answers what GET /v1/experiments answers, and a bad confidence is INVALID_ARGUMENT."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from serving.grpc.messages import as_dict
from serving.proto import storefront_pb2 as pb
from tests.serving.grpc.test_grpc_api import Gateway, Id, running, status_of

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]

EXPERIMENT = {
    "name": "grpc",
    "arms": [{"name": "control"}, {"name": "b", "ranker": "din_b"}],
    "shadow": {"name": "deep", "candidates": 39, "share": 1},
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(built) -> AsyncIterator[Gateway]:
    async with running(built, experiment=json.dumps(EXPERIMENT)) as gateway:
        yield gateway


async def test_answers_carry_the_arm_events_credit_it_and_the_report_equals_http(gw):
    arms = {}
    for user in (101, 102, 103, 104):
        answer = await gw.api.Recommend(pb.RecommendRequest(user_id=Id(user), k=4))
        assert answer.HasField("arm") and len(answer.request_id) == 16
        http = (await gw.http.post("/v1/recommend", json={"user_id": user, "k": 4})).json()
        assert http["arm"] == answer.arm and http["request_id"] != answer.request_id
        arms[user] = answer.arm
        clicked = pb.Event(user_id=Id(user), item_id=answer.items[0].item_id, event_type="click")
        clicked.request_id = answer.request_id
        assert (await gw.api.Events(pb.EventsRequest(events=[clicked]))).accepted == 1
    await gw.rt.services["experiments"].idle()
    report = await gw.api.Experiments(pb.ExperimentsRequest(confidence=0.9))
    assert as_dict(report) == (await gw.http.get("/v1/experiments", params={"confidence": 0.9})).json()
    got = as_dict(report)
    assert sum(a["clicks"] for a in got["arms"]) == 4 and got["shadow"]["runs"] >= 1
    assert {a["name"]: a["impressions"] for a in got["arms"]} == {
        arm: 8 * list(arms.values()).count(arm) for arm in ("control", "b")
    }  # 4 items per answer, gRPC's and HTTP's
    default = as_dict(await gw.api.Experiments(pb.ExperimentsRequest()))
    assert default["confidence"] == 0.95


@pytest.mark.parametrize("confidence", [0.1, 1.0, float("nan")])
async def test_a_bad_confidence_is_invalid_argument_naming_it(gw, confidence):
    code, details, _ = await status_of(gw.api.Experiments(pb.ExperimentsRequest(confidence=confidence)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("confidence: "), details
