"""The online store (per-user recent events, online catalogue changes): one interface, in-process and Redis."""

from __future__ import annotations

from serving.runtime.online_store.base import (
    CatalogueChanges,
    ItemChange,
    OnlineEvent,
    OnlineStore,
    StoreLimits,
    StoreUnavailable,
    UserEvents,
)
from serving.runtime.online_store.memory import MemoryStore
from serving.runtime.settings import Settings

__all__ = [
    "CatalogueChanges",
    "ItemChange",
    "MemoryStore",
    "OnlineEvent",
    "OnlineStore",
    "StoreLimits",
    "StoreUnavailable",
    "UserEvents",
    "open_store",
]


def open_store(settings: Settings) -> OnlineStore:
    """The backend SERVING_ONLINE_STORE names; Redis is imported only when used."""
    s = settings
    limits = StoreLimits(s.online_history_max, s.online_skips_max, s.online_ttl_s, s.online_max_users)
    if s.online_store == "memory":
        return MemoryStore(limits)
    from serving.runtime.online_store.redis import RedisStore

    return RedisStore(s.online_store, limits, timeout_s=s.online_timeout_ms / 1e3)
