"""`MemoryStore`: the online store inside this process (the default). Bounded: at most `max_users` users (the
least recently active go first), each with bounded deques; a user idle for `ttl_s` is forgotten on access."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from serving.runtime.online_store.base import DEFAULT_LIMITS, OnlineEvent, StoreLimits, UserEvents


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
        if state is None or time.time() - state.touched > self.limits.ttl_s:
            return UserEvents()
        return UserEvents(list(state.history), list(state.skips))

    async def health(self) -> str | None:
        return None

    async def close(self) -> None:
        self._users.clear()

    def __len__(self) -> int:
        return len(self._users)
