"""`RedisStore`: the online store on a real Redis (SERVING_ONLINE_STORE=redis://host:port/db), so several
gateway processes see each other's events at once.

Keys per user (`<prefix>h:<user>` history, `<prefix>s:<user>` skips): Redis lists of '<unix seconds> <item>'
entries, oldest first, trimmed to their bound and expiring SERVING_ONLINE_TTL_S after the last write. A batch
of events is one server-side script (RPUSH + LTRIM + EXPIRE per touched key: one round trip, atomic, and one
command for the client to encode instead of three per user); a user's read is one script (both LRANGEs).
Every call has SERVING_ONLINE_TIMEOUT_MS; a failure raises `StoreUnavailable`.

The catalogue: `<prefix>item:<id>` hashes of JSON field values (HSET merges a partial update) and the list
`<prefix>items` of the item written by each write (its length is the catalogue version). A write batch is one
script; a user's read returns the list's length too; `items_since` is two round trips (the ids written since,
then their hashes; a hash read a moment later than the list is only newer, and the next sync reads it again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serving.runtime.online_store.base import (
    DEFAULT_LIMITS,
    CatalogueChanges,
    ItemChange,
    OnlineEvent,
    StoreLimits,
    StoreUnavailable,
    UserEvents,
    decode,
    encode,
)

PREFIX = "shopserve:"

# ARGV: ttl, then per key: its bound, its entry count n, its n entries.
_APPEND = """
local ttl, a = tonumber(ARGV[1]), 2
for _, key in ipairs(KEYS) do
  local bound, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  redis.call('RPUSH', key, unpack(ARGV, a + 2, a + 1 + n))
  redis.call('LTRIM', key, -bound, -1)
  redis.call('EXPIRE', key, ttl)
  a = a + 2 + n
end
"""
_READ = """
return {redis.call('LRANGE', KEYS[1], 0, -1), redis.call('LRANGE', KEYS[2], 0, -1), redis.call('LLEN', KEYS[3])}
"""
# KEYS: the item hashes, then the write list. ARGV per item: its id, its field count n, n field/value pairs.
_UPSERT = """
local log, a = KEYS[#KEYS], 1
for i = 1, #KEYS - 1 do
  local item, n = ARGV[a], tonumber(ARGV[a + 1])
  if n > 0 then redis.call('HSET', KEYS[i], unpack(ARGV, a + 2, a + 1 + 2 * n)) end
  redis.call('RPUSH', log, item)
  a = a + 2 + 2 * n
end
return redis.call('LLEN', log)
"""


def bounded_client(url: str, timeout_s: float) -> aioredis.Redis:
    """A client whose connections open lazily (a gateway starts even while Redis is away; /readyz says so, and it
    recovers with it) and with no socket timeout: `bounded` limits each call instead (redis-py's own per-read
    timeout costs ~90 us of CPU a call, a third of a user read; a call cancelled mid-read drops its connection)."""
    return aioredis.Redis.from_url(url, socket_timeout=None, socket_connect_timeout=timeout_s, retry_on_timeout=False)


async def bounded(call: Awaitable[Any], timeout_s: float, unavailable: Callable[[str], Exception]) -> Any:
    """`call` within twice `timeout_s` (connect + command); a Redis failure or timeout raises `unavailable(why)`."""
    try:
        async with asyncio.timeout(timeout_s * 2):
            return await call
    except (RedisError, OSError, TimeoutError) as exc:
        raise unavailable(f"redis: {type(exc).__name__}: {exc}") from exc


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, limits: StoreLimits = DEFAULT_LIMITS, timeout_s: float = 0.05, prefix: str = PREFIX):
        self.limits, self.timeout_s, self.prefix = limits, timeout_s, prefix
        self._client = bounded_client(url, timeout_s)
        self._append = self._client.register_script(_APPEND)  # EVALSHA, loaded again if the server lost it
        self._read = self._client.register_script(_READ)
        self._upsert = self._client.register_script(_UPSERT)
        self._items_key = f"{prefix}items"

    async def _call(self, coro: Awaitable[Any]) -> Any:
        return await bounded(coro, self.timeout_s, StoreUnavailable)

    async def append(self, events: Sequence[OnlineEvent]) -> None:
        if not events:
            return
        lim = self.limits
        grouped: dict[str, list[bytes]] = {}
        for e in events:
            key = f"{self.prefix}{'s' if e.skip else 'h'}:{e.user}"
            grouped.setdefault(key, []).append(encode(e.timestamp, e.item))
        args: list[bytes | int] = [max(int(lim.ttl_s), 1)]
        for key, entries in grouped.items():
            bound = lim.skips_max if key.startswith(f"{self.prefix}s:") else lim.history_max
            args += [bound, len(entries), *entries]
        await self._call(self._append(keys=list(grouped), args=args))

    async def user(self, user: str) -> UserEvents:
        keys = [f"{self.prefix}h:{user}", f"{self.prefix}s:{user}", self._items_key]
        history, skips, version = await self._call(self._read(keys=keys))
        return UserEvents([decode(e) for e in history], [decode(e) for e in skips], int(version))

    def _item_key(self, item: str) -> str:
        return f"{self.prefix}item:{item}"

    async def upsert_items(self, changes: Sequence[ItemChange]) -> int:
        if not changes:
            return int(await self._call(self._client.llen(self._items_key)))
        args: list[bytes | str | int] = []
        for c in changes:
            args += [c.item, len(c.fields)]
            for name, value in c.fields.items():
                args += [name, orjson.dumps(value)]
        keys = [self._item_key(c.item) for c in changes] + [self._items_key]
        return int(await self._call(self._upsert(keys=keys, args=args)))

    async def items_since(self, version: int) -> CatalogueChanges:
        written = await self._call(self._client.lrange(self._items_key, version, -1))
        items = list(dict.fromkeys(w.decode() for w in written))
        if not items:
            return CatalogueChanges(version)
        pipe = self._client.pipeline(transaction=False)
        for item in items:
            pipe.hgetall(self._item_key(item))
        stored = await self._call(pipe.execute())
        fields = {
            item: {k.decode(): orjson.loads(v) for k, v in h.items()} for item, h in zip(items, stored, strict=True)
        }
        return CatalogueChanges(version + len(written), fields)

    async def health(self) -> str | None:
        try:
            await self._call(self._client.ping())
        except StoreUnavailable as exc:
            return f"redis unreachable ({type(exc.__cause__).__name__})"
        return None

    async def close(self) -> None:
        await self._client.aclose()
