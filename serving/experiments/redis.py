"""`RedisLedger`: the experiment ledger on the online store's Redis, so every gateway on it reports the same totals.

Keys under `shopserve:exp:<experiment>:`: `tallies` (a hash, "<arm>:<measure>" -> count, kept), and per answer
`a:<request_id>` (a hash: `arm`, `i:<item>` per item shown, `c:<type>:<item>` once credited), expiring after the
experiment's `ttl_s`. Each call is one server-side script: one round trip per answer, per events batch and per
shadow run, atomic, so two gateways crediting the same click count it once. Every call has the online store's
budget (SERVING_ONLINE_TIMEOUT_MS); a failure raises `LedgerUnavailable`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from serving.experiments.ledger import IMPRESSIONS, Engagement, LedgerUnavailable, tally
from serving.runtime.online_store.redis import bounded, bounded_client

PREFIX = "shopserve:exp:"

# KEYS: the answer, the tallies. ARGV: ttl, the impressions field, the item count, then the answer's field/value pairs.
_SHOWN = """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
"""
# KEYS: the tallies, then the answer of each engagement. ARGV: item and type of each. -> arm, type of each credit.
_CREDIT = """
local out = {}
for i = 2, #KEYS do
  local item, kind = ARGV[2 * i - 3], ARGV[2 * i - 2]
  local arm = redis.call('HGET', KEYS[i], 'arm')
  if arm and redis.call('HEXISTS', KEYS[i], 'i:' .. item) == 1
     and redis.call('HSETNX', KEYS[i], 'c:' .. kind .. ':' .. item, 1) == 1 then
    redis.call('HINCRBY', KEYS[1], arm .. ':' .. kind, 1)
    out[#out + 1] = arm
    out[#out + 1] = kind
  end
end
return out
"""
_ADD = """
for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
"""


class RedisLedger:
    kind = "redis"

    def __init__(self, url: str, experiment: str, ttl_s: float, timeout_s: float = 0.05, prefix: str = PREFIX):
        self.ttl_s, self.timeout_s = ttl_s, timeout_s
        self._base = f"{prefix}{experiment}:"
        self._tallies = f"{self._base}tallies"
        self._client = bounded_client(url, timeout_s)  # its own: the online store's stays the store's
        self._shown = self._client.register_script(_SHOWN)
        self._credit = self._client.register_script(_CREDIT)
        self._add = self._client.register_script(_ADD)

    def _answer(self, request_id: str) -> str:
        return f"{self._base}a:{request_id}"

    async def _call(self, coro: Awaitable[Any]) -> Any:
        return await bounded(coro, self.timeout_s, LedgerUnavailable)

    async def shown(self, request_id: str, arm: str, items: Sequence[str]) -> None:
        fields: list[str | int] = ["arm", arm]
        for item in items:
            fields += [f"i:{item}", 1]
        args = [max(int(self.ttl_s), 1), tally(arm, IMPRESSIONS), len(items), *fields]
        await self._call(self._shown(keys=[self._answer(request_id), self._tallies], args=args))

    async def credit(self, engagements: Sequence[Engagement]) -> list[tuple[str, str]]:
        if not engagements:
            return []
        keys = [self._tallies, *(self._answer(e.request_id) for e in engagements)]
        args = [v for e in engagements for v in (e.item, e.kind)]
        flat = await self._call(self._credit(keys=keys, args=args))
        words = [w.decode() for w in flat]
        return list(zip(words[::2], words[1::2], strict=True))

    async def add(self, tallies: Mapping[str, float]) -> None:
        if tallies:
            args = [v for name, value in tallies.items() for v in (name, repr(float(value)))]
            await self._call(self._add(keys=[self._tallies], args=args))

    async def totals(self) -> dict[str, float]:
        raw = await self._call(self._client.hgetall(self._tallies))
        return {k.decode(): float(v) for k, v in raw.items()}

    async def close(self) -> None:
        await self._client.aclose()
