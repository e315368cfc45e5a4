"""The experiment ledger, both backends on one set of expectations: impressions per arm, a click credited once per
(answer, item, type) and only on an item the answer showed, answers expiring; on Redis, two ledgers (two gateways)
on one real redis-server see one set of totals, and a Redis that is away raises LedgerUnavailable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from serving.experiments.ledger import Engagement, LedgerUnavailable
from serving.experiments.memory import MemoryLedger
from serving.experiments.redis import RedisLedger
from serving.runtime.online_store.server import free_port

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]


@pytest_asyncio.fixture(params=["memory", "redis"])
async def ledger(request, redis_server) -> AsyncIterator:
    if request.param == "memory":
        made = MemoryLedger(ttl_s=60)
    else:  # a fresh experiment name: a fresh set of keys on the shared server
        made = RedisLedger(redis_server.url, f"t-{uuid.uuid4().hex[:8]}", ttl_s=60, timeout_s=1.0)
    yield made
    await made.close()


async def test_impressions_and_clicks_credited_once_per_answer_item_and_type(ledger):
    await ledger.shown("r1", "a", ["i1", "i2", "i3"])
    await ledger.shown("r2", "b", ["i1", "7"])
    credits = await ledger.credit(
        [
            Engagement("r1", "i1", "click"),
            Engagement("r1", "i1", "click"),  # the same again: once
            Engagement("r1", "i1", "buy"),  # another type on the same item: counted
            Engagement("r1", "i9", "click"),  # not shown by r1
            Engagement("r2", "7", "cart"),
            Engagement("nope", "i1", "click"),  # no such answer
        ]
    )
    assert credits == [("a", "click"), ("a", "buy"), ("b", "cart")]
    assert await ledger.credit([Engagement("r1", "i1", "click")]) == []  # a retried batch counts nothing twice
    await ledger.add({"s:shadow_ok": 1, "s:shadow_agreement": 0.75})
    await ledger.add({"s:shadow_ok": 1, "s:shadow_agreement": 0.5})
    assert await ledger.totals() == {
        "a:impressions": 3,
        "b:impressions": 2,
        "a:click": 1,
        "a:buy": 1,
        "b:cart": 1,
        "s:shadow_ok": 2,
        "s:shadow_agreement": 1.25,
    }


async def test_an_answer_expires_after_the_ttl(redis_server):
    for ledger in (MemoryLedger(ttl_s=0.05), RedisLedger(redis_server.url, f"t-{uuid.uuid4().hex[:8]}", ttl_s=1)):
        await ledger.shown("r1", "a", ["i1", "i2"])
        await asyncio.sleep(0.1 if ledger.kind == "memory" else 1.2)
        assert await ledger.credit([Engagement("r1", "i1", "click")]) == [], ledger.kind
        assert (await ledger.totals())["a:impressions"] == 2  # the tallies stay
        await ledger.close()


async def test_the_memory_ledger_keeps_at_most_max_answers():
    ledger = MemoryLedger(ttl_s=60, max_answers=2)
    for rid in ("r1", "r2", "r3"):
        await ledger.shown(rid, "a", ["i1"])
    assert await ledger.credit([Engagement(r, "i1", "click") for r in ("r1", "r2", "r3")]) == [("a", "click")] * 2


async def test_two_redis_ledgers_on_one_server_share_answers_and_totals(redis_server):
    name = f"t-{uuid.uuid4().hex[:8]}"
    one, two = (RedisLedger(redis_server.url, name, ttl_s=60, timeout_s=1.0) for _ in range(2))
    try:
        await one.shown("r1", "a", ["i1", "i2"])
        await two.shown("r2", "b", ["i1"])
        # Clicks arrive at either gateway, each answer's twice at once: credited once in all.
        got = await asyncio.gather(
            one.credit([Engagement("r2", "i1", "click")]),
            two.credit([Engagement("r2", "i1", "click")]),
            two.credit([Engagement("r1", "i2", "click")]),
            one.credit([Engagement("r1", "i2", "click")]),
        )
        assert sorted(c for g in got for c in g) == [("a", "click"), ("b", "click")]
        assert (
            await one.totals()
            == await two.totals()
            == {
                "a:impressions": 2,
                "b:impressions": 1,
                "a:click": 1,
                "b:click": 1,
            }
        )
    finally:
        await one.close()
        await two.close()


async def test_a_redis_that_is_away_raises_ledger_unavailable():
    ledger = RedisLedger(f"redis://127.0.0.1:{free_port()}/0", "t", ttl_s=60, timeout_s=0.05)
    for call in (ledger.shown("r", "a", ["i"]), ledger.credit([Engagement("r", "i", "click")]), ledger.totals()):
        with pytest.raises(LedgerUnavailable) as err:
            await call
        assert err.value.status == 503 and "redis" in err.value.internal
    await ledger.close()
