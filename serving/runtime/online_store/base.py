"""The online store's one interface: per-user recent events that every gateway process sees at once.

What it holds per user (ids as the shop's, in text: an integer catalogue answers to "123" as to 123):
- history: the last SERVING_ONLINE_HISTORY_MAX click/cart/buy items, oldest first, with their time;
- skips: the last SERVING_ONLINE_SKIPS_MAX skipped items, oldest first, with their time.
Views are not kept (the durable event log has them): the history is what the export's history is, positives.
A user's state expires SERVING_ONLINE_TTL_S after their last event.

It also holds the catalogue's online changes (POST /v1/items): per item, the latest value of each field
written (category_id, brand_id, price, in_stock, deleted; JSON values), and the catalogue version, the count
of item writes so far. Each process applies the changes after the version it has (serving/recommend/
catalogue.py); a user read returns the version too, so a process learns of another's writes without an
extra round trip.

Two backends: `MemoryStore` (this process; the default, so one laptop runs everything) and `RedisStore`
(a real Redis; gateways on one Redis read each other's writes). `open_store(settings)` picks by
SERVING_ONLINE_STORE. A backend that fails raises `StoreUnavailable` (503 for /v1/events; /v1/recommend
goes on with the stored history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.contracts.errors import Unavailable


@dataclass(frozen=True, slots=True)
class OnlineEvent:
    """One event as the store keeps it: ids in text, `positive` (click/cart/buy) or a skip."""

    user: str
    item: str
    timestamp: float
    skip: bool


@dataclass
class UserEvents:
    """One user's online state, oldest first: (unix seconds, item id) pairs; and the catalogue's version."""

    history: list[tuple[float, str]] = field(default_factory=list)
    skips: list[tuple[float, str]] = field(default_factory=list)
    catalogue_version: int = 0


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One item write: the fields given (the others keep their stored value). Ids in text, as for events."""

    item: str
    fields: Mapping[str, Any]


@dataclass
class CatalogueChanges:
    """The items written after some version: each one's merged fields now, and the version they bring."""

    version: int
    items: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreLimits:
    history_max: int = 500
    skips_max: int = 200
    ttl_s: float = 30 * 86400
    max_users: int = 1_000_000  # memory store only


DEFAULT_LIMITS = StoreLimits()


class StoreUnavailable(Unavailable):
    code = "online_store_unavailable"

    def __init__(self, why: str):
        super().__init__("online store unavailable", retry_after=1, internal=why)


class OnlineStore(Protocol):
    kind: str  # "memory" or "redis"

    async def append(self, events: Sequence[OnlineEvent]) -> None:
        """Add the events (in order) to their users' state; all or nothing is the backend's best effort."""
        ...

    async def user(self, user: str) -> UserEvents:
        """The user's state (empty for a user without online events) and the catalogue version."""
        ...

    async def upsert_items(self, changes: Sequence[ItemChange]) -> int:
        """Merge the changes into the items' stored fields, in order; -> the catalogue version after them."""
        ...

    async def items_since(self, version: int) -> CatalogueChanges:
        """The merged fields of every item written after `version` (0: all), and the version now."""
        ...

    async def health(self) -> str | None:
        """None when the store answers, else why not (for /readyz)."""
        ...

    async def close(self) -> None: ...


def encode(timestamp: float, item: str) -> bytes:
    """'<unix seconds> <item id>': the item id may hold any character, the time none of them."""
    return b"%.3f %s" % (timestamp, item.encode())


def decode(entry: bytes) -> tuple[float, str]:
    ts, item = entry.split(b" ", 1)
    return float(ts), item.decode()
