"""`RedisStore`: the online store on a real Redis (SERVING_ONLINE_STORE=redis://host:port/db), so several
gateway processes see each other's events at once.

Keys per user (`<prefix>h:<user>` history, `<prefix>s:<user>` skips): Redis lists of '<unix seconds> <item>'
entries, oldest first, trimmed to their bound and expiring SERVING_ONLINE_TTL_S after the last write. One
batch of events is one pipelined round trip (RPUSH + LTRIM + EXPIRE per touched key); one user's read is one
round trip (two LRANGEs). Every call has SERVING_ONLINE_TIMEOUT_MS; a failure raises `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serving.runtime.online_store.base import (
    DEFAULT_LIMITS,
    OnlineEvent,
    StoreLimits,
    StoreUnavailable,
    UserEvents,
    decode,
    encode,
)

PREFIX = "shopserve:"


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, limits: StoreLimits = DEFAULT_LIMITS, timeout_s: float = 0.05, prefix: str = PREFIX):
        self.limits, self.timeout_s, self.prefix = limits, timeout_s, prefix
        # Connections open lazily: a gateway starts even while Redis is away (/readyz says so) and recovers with it.
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )

    def _keys(self, user: str) -> tuple[str, str]:
        return f"{self.prefix}h:{user}", f"{self.prefix}s:{user}"

    async def _run(self, pipe: aioredis.client.Pipeline) -> list:
        try:
            async with asyncio.timeout(self.timeout_s * 2):  # connect + command, each bounded by the socket timeout
                return await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def append(self, events: Sequence[OnlineEvent]) -> None:
        if not events:
            return
        grouped: dict[str, list[bytes]] = {}
        for e in events:
            grouped.setdefault(self._keys(e.user)[1 if e.skip else 0], []).append(encode(e.timestamp, e.item))
        lim = self.limits
        ttl = max(int(lim.ttl_s), 1)
        pipe = self._client.pipeline(transaction=False)
        for key, entries in grouped.items():
            bound = lim.skips_max if key.startswith(f"{self.prefix}s:") else lim.history_max
            pipe.rpush(key, *entries)
            pipe.ltrim(key, -bound, -1)
            pipe.expire(key, ttl)
        await self._run(pipe)

    async def user(self, user: str) -> UserEvents:
        history_key, skips_key = self._keys(user)
        pipe = self._client.pipeline(transaction=False)
        pipe.lrange(history_key, 0, -1)
        pipe.lrange(skips_key, 0, -1)
        history, skips = await self._run(pipe)
        return UserEvents([decode(e) for e in history], [decode(e) for e in skips])

    async def health(self) -> str | None:
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                await self._client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            return f"redis unreachable ({type(exc).__name__})"
        return None

    async def close(self) -> None:
        await self._client.aclose()
