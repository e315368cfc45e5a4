"""`Experiments`: the configured experiment in a running gateway (one per Runtime, kept across reloads).

- `assign(user_id)`: the user's arm (serving/contracts/experiments.py: a stable hash).
- `served(request_id, arm, items)`: an answer was given; Prometheus counts its impressions, the ledger keeps it.
- `credit(engagements)`: click/cart/buy events naming an answer; the ledger credits its arm once per item and type.
- `shadow(live, run)`: on the shadow's share of answers, `run(shadow arm)` in a background task, at most
  `max_inflight` at once (more are dropped and counted); its latency and its agreement with the live answer go
  to Prometheus and the ledger. The answer is already built: a shadow never changes or delays it.
A ledger that fails is counted (gateway_experiment_ledger_errors_total) and logged, never raised into an answer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from serving.contracts.experiments import Arm, ExperimentConfig, Shadow
from serving.experiments.ledger import Engagement, Ledger, LedgerUnavailable, tally
from serving.experiments.memory import MemoryLedger
from serving.experiments.stats import agreement, latency_bucket
from serving.runtime.metrics import Metrics
from serving.runtime.runtime import Runtime
from serving.runtime.settings import Settings

log = logging.getLogger("serving.experiments")
NAME = "experiments"  # the capability's name: its state is rt.services[NAME]
T = TypeVar("T")

# What a shadow run returns: the items of its answer, or None when it degraded (a model stood in).
ShadowRun = Callable[[Shadow], Awaitable[Sequence[int | str] | None]]


class Experiments:
    def __init__(self, config: ExperimentConfig, ledger: Ledger, metrics: Metrics, shadow_timeout_s: float = 5.0):
        self.config, self.ledger, self.metrics = config, ledger, metrics
        self.shadow_timeout_s = shadow_timeout_s
        self._shadows: set[asyncio.Task] = set()  # running shadow runs, referenced until done
        self._dropped = 0  # shadow runs dropped since the last ledger write (sent with the next one)

    @property
    def name(self) -> str:
        return self.config.name

    def assign(self, user_id: int | str) -> Arm:
        return self.config.assign(user_id)

    async def served(self, request_id: str, arm: str, items: Sequence[int | str]) -> None:
        if not items:
            return
        m = self.metrics
        m.child(m.experiment_impressions, self.name, arm).inc(len(items))
        await self._safely("shown", self.ledger.shown(request_id, arm, [str(i) for i in items]))

    async def credit(self, engagements: Sequence[Engagement]) -> None:
        if not engagements:
            return
        credits = await self._safely("credit", self.ledger.credit(engagements))
        if credits is None:
            return
        m = self.metrics
        for arm, kind in credits:
            m.child(m.experiment_events, self.name, arm, kind).inc()
        if len(credits) < len(engagements):
            m.child(m.experiment_uncredited, self.name).inc(len(engagements) - len(credits))

    async def totals(self) -> dict[str, float]:
        """Every tally of the ledger; LedgerUnavailable (503) when it cannot be read."""
        return await self.ledger.totals()

    def shadow(self, live: Sequence[int | str], run: ShadowRun) -> None:
        sh = self.config.shadow
        if sh is None or random.random() >= sh.share:
            return
        if len(self._shadows) >= sh.max_inflight:  # the bound: live traffic first
            self._dropped += 1
            self.metrics.child(self.metrics.shadow_runs, self.name, sh.name, "dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._shadow(sh, list(live), run), name=f"shadow-{sh.name}")
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(self, sh: Shadow, live: list[int | str], run: ShadowRun) -> None:
        m, t0 = self.metrics, time.perf_counter()
        try:
            async with asyncio.timeout(self.shadow_timeout_s):
                items = await run(sh)
            outcome = "ok" if items is not None else "degraded"
        except Exception as exc:  # whatever it is, it stays in the background: counted and logged
            items, outcome = None, "failed"
            log.warning("shadow arm %s failed: %s: %s", sh.name, type(exc).__name__, exc)
        seconds = time.perf_counter() - t0
        m.child(m.shadow_runs, self.name, sh.name, outcome).inc()
        tallies: dict[str, float] = {tally(sh.name, f"shadow_{outcome}"): 1}
        if self._dropped:
            tallies[tally(sh.name, "shadow_dropped")], self._dropped = self._dropped, 0
        if outcome != "failed":
            m.child(m.shadow_seconds, self.name, sh.name).observe(seconds)
            tallies[tally(sh.name, f"shadow_ms_{latency_bucket(seconds * 1e3)}")] = 1
        if items is not None:
            share = agreement([str(i) for i in live], [str(i) for i in items])
            m.child(m.shadow_agreement, self.name, sh.name).observe(share)
            tallies[tally(sh.name, "shadow_agreement")] = share
        await self._safely("shadow", self.ledger.add(tallies))

    async def _safely(self, operation: str, call: Coroutine[Any, Any, T]) -> T | None:
        try:
            return await call
        except LedgerUnavailable as exc:
            self.metrics.experiment_ledger_errors.labels(operation).inc()
            log.warning("experiment ledger %s failed: %s", operation, exc.internal)
            return None

    async def idle(self) -> None:
        """Wait for the shadow runs under way (tests, benchmarks)."""
        while self._shadows:
            await asyncio.gather(*self._shadows, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._shadows):
            task.cancel()
        await asyncio.gather(*self._shadows, return_exceptions=True)
        await self.ledger.close()


def open_ledger(settings: Settings, config: ExperimentConfig) -> Ledger:
    """Beside the online store: in this process, or on the same Redis (imported only when used)."""
    if settings.online_store == "memory":
        return MemoryLedger(config.ttl_s)
    from serving.experiments.redis import RedisLedger

    return RedisLedger(settings.online_store, config.name, config.ttl_s, timeout_s=settings.online_timeout_ms / 1e3)


def open_experiments(settings: Settings, metrics: Metrics) -> Experiments | None:
    """The capability's `service`: None without SERVING_EXPERIMENT."""
    if settings.experiment is None:
        return None
    ledger = open_ledger(settings, settings.experiment)
    return Experiments(settings.experiment, ledger, metrics, shadow_timeout_s=settings.request_timeout_s)


def active(rt: Runtime) -> Experiments | None:
    """The running experiment, if one is configured (and the experiments capability registered)."""
    return rt.services.get(NAME)
