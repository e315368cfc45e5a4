"""The online store's one interface, on both backends: memory and a real redis-server (same assertions)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from serving.runtime.online_store import MemoryStore, OnlineEvent, StoreLimits, StoreUnavailable, open_store
from serving.runtime.online_store.base import decode, encode
from serving.runtime.online_store.redis import RedisStore
from serving.runtime.online_store.server import free_port
from serving.runtime.settings import Settings

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]
LIMITS = StoreLimits(history_max=5, skips_max=3, ttl_s=3600, max_users=4)
_prefixes = itertools.count()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request) -> AsyncIterator:
    if request.param == "memory":
        s = MemoryStore(LIMITS)
    else:  # a fresh key prefix per test: one server, no test sees another's users
        s = RedisStore(
            request.getfixturevalue("redis_server").url, LIMITS, timeout_s=1.0, prefix=f"t{next(_prefixes)}:"
        )
    yield s
    await s.close()


def ev(user: str, item: str, ts: float, skip: bool = False) -> OnlineEvent:
    return OnlineEvent(user, item, ts, skip)


async def test_history_and_skips_are_kept_in_order_and_bounded(store):
    await store.append([ev("u1", f"i{i}", 100.0 + i) for i in range(7)])
    await store.append([ev("u1", "x y|z", 200.5), ev("u1", "s1", 201, skip=True), ev("u2", "i9", 300)])
    await store.append([ev("u1", f"s{i}", 202 + i, skip=True) for i in range(2, 5)])
    u1 = await store.user("u1")
    assert u1.history == [(103.0, "i3"), (104.0, "i4"), (105.0, "i5"), (106.0, "i6"), (200.5, "x y|z")]
    assert [item for _, item in u1.skips] == ["s2", "s3", "s4"]  # the last 3, oldest first
    assert (await store.user("u2")).history == [(300.0, "i9")]
    nobody = await store.user("nobody")
    assert nobody.history == [] and nobody.skips == []
    assert await store.health() is None


async def test_a_batch_lands_whole_before_a_concurrent_read(store):
    batch = [ev("rw", f"i{i}", float(i)) for i in range(5)]
    await asyncio.gather(store.append(batch), asyncio.sleep(0))
    assert len((await store.user("rw")).history) == 5


async def test_memory_store_forgets_idle_and_least_recent_users():
    store = MemoryStore(StoreLimits(history_max=5, skips_max=3, ttl_s=0.05, max_users=2))
    await store.append([ev("a", "i1", 1), ev("b", "i1", 1), ev("c", "i1", 1)])
    assert len(store) == 2 and (await store.user("a")).history == []  # a: least recently active, dropped
    await asyncio.sleep(0.1)
    assert (await store.user("c")).history == []  # idle past the TTL


async def test_redis_entries_expire_with_the_user_ttl(redis_server):
    store = RedisStore(redis_server.url, StoreLimits(ttl_s=1), timeout_s=1.0, prefix="ttl:")
    await store.append([ev("u", "i1", 1)])
    ttl = await store._client.ttl("ttl:h:u")
    assert 0 < ttl <= 1
    await store.close()


async def test_unreachable_redis_fails_fast_as_unavailable():
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", LIMITS, timeout_s=0.05)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(StoreUnavailable) as err:
        await store.append([ev("u", "i", 1)])
    with pytest.raises(StoreUnavailable):
        await store.user("u")
    assert loop.time() - t0 < 1.0 and err.value.status == 503 and "redis" in (err.value.internal or "")
    assert "unreachable" in (await store.health() or "")
    await store.close()


async def test_entries_round_trip_and_settings_pick_the_backend(redis_server):
    assert decode(encode(12.3456, "a b")) == (12.346, "a b")
    assert open_store(Settings()).kind == "memory"
    assert open_store(Settings(online_store=redis_server.url)).kind == "redis"
    with pytest.raises(ValueError, match="Redis URL"):
        Settings(online_store="postgres://x")
