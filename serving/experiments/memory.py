"""`MemoryLedger`: the experiment ledger inside this process (the default, beside the memory online store).
Bounded: answers expire after `ttl_s` and at most `max_answers` are kept (the oldest go first)."""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from serving.experiments.ledger import IMPRESSIONS, Engagement, tally

MAX_ANSWERS = 1_000_000


@dataclass(slots=True)
class _Answer:
    expires: float
    arm: str
    items: frozenset[str]
    credited: set[tuple[str, str]] = field(default_factory=set)  # (item, event type)


class MemoryLedger:
    kind = "memory"

    def __init__(self, ttl_s: float, max_answers: int = MAX_ANSWERS):
        self.ttl_s, self.max_answers = ttl_s, max_answers
        self._answers: OrderedDict[str, _Answer] = OrderedDict()
        self._tallies: defaultdict[str, float] = defaultdict(float)

    async def shown(self, request_id: str, arm: str, items: Sequence[str]) -> None:
        now = time.monotonic()
        self._answers[request_id] = _Answer(now + self.ttl_s, arm, frozenset(items))
        self._answers.move_to_end(request_id)
        # One TTL for all: insertion order is expiry order, so the expired are at the front.
        while self._answers and (
            len(self._answers) > self.max_answers or next(iter(self._answers.values())).expires <= now
        ):
            self._answers.popitem(last=False)
        self._tallies[tally(arm, IMPRESSIONS)] += len(items)

    async def credit(self, engagements: Sequence[Engagement]) -> list[tuple[str, str]]:
        now, out = time.monotonic(), []
        for e in engagements:
            answer = self._answers.get(e.request_id)
            if answer is None or answer.expires <= now or e.item not in answer.items:
                continue
            if (e.item, e.kind) in answer.credited:
                continue
            answer.credited.add((e.item, e.kind))
            self._tallies[tally(answer.arm, e.kind)] += 1
            out.append((answer.arm, e.kind))
        return out

    async def add(self, tallies: Mapping[str, float]) -> None:
        for name, value in tallies.items():
            self._tallies[name] += value

    async def totals(self) -> dict[str, float]:
        return dict(self._tallies)

    async def close(self) -> None:
        self._answers.clear()
