"""The experiment ledger's one interface: what each answer showed, and tallies per arm that every process shares.

- `shown(request_id, arm, items)`: the answer's arm and item ids (as text), kept for the experiment's `ttl_s`;
  the arm's impressions grow by the number of items.
- `credit(engagements)`: a click, cart or buy on an item that answer `request_id` showed adds one to its arm's
  tally of that event type, once per (request_id, item, type); -> (arm, type) of each new credit.
- `add(tallies)`: plain increments (the shadow arm's figures).
- `totals()`: every tally, {"<arm>:<measure>": value}.

Two backends: `MemoryLedger` (this process) and `RedisLedger` (the online store's Redis, so gateways on one Redis
report the same totals). A backend that fails raises `LedgerUnavailable`; no answer or events batch fails on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from serving.contracts.errors import Unavailable

IMPRESSIONS = "impressions"


def tally(arm: str, measure: str) -> str:
    return f"{arm}:{measure}"  # arm names hold no ':' (serving/contracts/experiments.py)


class LedgerUnavailable(Unavailable):
    code = "experiment_ledger_unavailable"

    def __init__(self, why: str):
        super().__init__("experiment ledger unavailable", retry_after=1, internal=why)


@dataclass(frozen=True, slots=True)
class Engagement:
    """A click/cart/buy event naming the answer that showed the item."""

    request_id: str
    item: str  # the shop's id as text, as `shown` keeps it
    kind: str  # click, cart or buy


class Ledger(Protocol):
    kind: str  # "memory" or "redis"

    async def shown(self, request_id: str, arm: str, items: Sequence[str]) -> None: ...

    async def credit(self, engagements: Sequence[Engagement]) -> list[tuple[str, str]]: ...

    async def add(self, tallies: Mapping[str, float]) -> None: ...

    async def totals(self) -> dict[str, float]: ...

    async def close(self) -> None: ...
