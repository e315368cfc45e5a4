"""`MemoryStore`: the online store inside this process (the default). Bounded: at most `max_users` users (the
least recently active go first), each with bounded deques; a user idle for `ttl_s` is forgotten on access.
Catalogue changes are kept whole (one dict per changed item; the write log holds one id per write)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.runtime.online_store.base import (
    DEFAULT_LIMITS,
    CatalogueChanges,
    ItemChange,
    OnlineEvent,
    StoreLimits,
    UserEvents,
)


@dataclass
class _User:
    history: deque[tuple[float, str]]
    skips: deque[tuple[float, str]]
    touched: float = field(default=0.0)


class MemoryStore:
    kind = "memory"

    def __init__(self, limits: StoreLimits = DEFAULT_LIMITS):
        self.limits = limits
        self._users: OrderedDict[str, _User] = OrderedDict()
        self._items: dict[str, dict[str, Any]] = {}
        self._item_log: list[str] = []  # item written by each write so far: version = its length

    def _state(self, user: str, now: float) -> _User:
        state = self._users.get(user)
        if state is None or now - state.touched > self.limits.ttl_s:
            lim = self.limits
            state = _User(deque(maxlen=lim.history_max), deque(maxlen=lim.skips_max))
            self._users[user] = state
            if len(self._users) > lim.max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user)
        state.touched = now
        return state

    async def append(self, events: Sequence[OnlineEvent]) -> None:
        now = time.time()
        for e in events:  # no await inside: a batch lands as a whole before any read runs
            state = self._state(e.user, now)
            (state.skips if e.skip else state.history).append((e.timestamp, e.item))

    async def user(self, user: str) -> UserEvents:
        state = self._users.get(user)
        version = len(self._item_log)
        if state is None or time.time() - state.touched > self.limits.ttl_s:
            return UserEvents(catalogue_version=version)
        return UserEvents(list(state.history), list(state.skips), version)

    async def upsert_items(self, changes: Sequence[ItemChange]) -> int:
        for c in changes:
            self._items.setdefault(c.item, {}).update(c.fields)
            self._item_log.append(c.item)
        return len(self._item_log)

    async def items_since(self, version: int) -> CatalogueChanges:
        changed = dict.fromkeys(self._item_log[version:])
        return CatalogueChanges(len(self._item_log), {item: dict(self._items[item]) for item in changed})

    async def health(self) -> str | None:
        return None

    async def close(self) -> None:
        self._users.clear()  # the catalogue's changes stay: a reload replays them onto the new export

    def __len__(self) -> int:
        return len(self._users)
