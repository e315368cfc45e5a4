"""Circuit breakers, one per model: a dead or frozen model server costs milliseconds, not the request deadline.

closed: calls go through; `failures_to_open` failures or timeouts in a row open it.
open: calls fail at once with ModelUnavailable (Retry-After) until `reset_s` has passed.
half-open: one probe checks the model; its success closes the breaker, its failure opens it again for
another `reset_s`. With a `probe` (the backend's readiness check) the probe runs in the background and
every caller keeps failing fast, so a frozen server never holds a shopper's request; without one, the
next call is the probe. Every change of state is logged and counted.
Load shedding (Overloaded, ShuttingDown) and bad input never count: they say nothing about the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from serving.contracts.errors import Unavailable

log = logging.getLogger("serving.breaker")

State = Literal["closed", "open", "half_open"]
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}
PROBE_FAILED = " (probe: still not ready)"


class ModelUnavailable(Unavailable):
    """The model's breaker is open (or its call failed or ran past its budget): the caller may degrade."""

    code = "model_unavailable"

    def __init__(self, model: str, reason: str, retry_after: int = 1):
        super().__init__(f"{model} unavailable: {reason}", retry_after=retry_after)
        self.model, self.reason = model, reason


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures_to_open: int = 3,
        reset_s: float = 0.5,
        on_change: Callable[[str, State, State], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[], Awaitable[bool]] | None = None,
    ):
        self.name, self.failures_to_open, self.reset_s = name, failures_to_open, reset_s
        self.state: State = "closed"
        self.failures = 0
        self.last_failure = ""
        self._opened_at = 0.0
        self._probing = False
        self._on_change, self._clock, self._probe = on_change, clock, probe
        self._probe_task: asyncio.Task | None = None

    def before_call(self) -> None:
        """Raise ModelUnavailable when the call must not go through now."""
        if self.state == "closed":
            return
        if self.state == "open":
            if self._clock() - self._opened_at < self.reset_s:
                raise ModelUnavailable(self.name, f"circuit open after: {self.last_failure}")
            self._move("half_open")
            if self._probe is not None:
                self._probing = True
                self._probe_task = asyncio.get_running_loop().create_task(self._run_probe())
        if self._probe is not None:
            raise ModelUnavailable(self.name, "circuit half-open, a probe is running")
        if self._probing:  # half-open: one probe at a time
            raise ModelUnavailable(self.name, "circuit half-open, a probe is running")
        self._probing = True

    def success(self) -> None:
        self._probing = False
        self.failures = 0
        if self.state != "closed":
            self._move("closed")

    def failure(self, why: str) -> None:
        self._probing = False
        self.failures += 1
        self.last_failure = why
        if self.state == "half_open" or (self.state == "closed" and self.failures >= self.failures_to_open):
            self._opened_at = self._clock()
            self._move("open")

    async def _run_probe(self) -> None:
        ok = False
        with contextlib.suppress(Exception):
            ok = bool(await self._probe())  # type: ignore[misc]
        if self.state != "half_open":  # a call closed or opened it meanwhile
            self._probing = False
            return
        if ok:
            self.success()
        else:
            self.failure(self.last_failure.removesuffix(PROBE_FAILED) + PROBE_FAILED)

    def cancelled(self) -> None:
        """The caller went away (its own deadline): neither a success nor a failure of the model."""
        self._probing = False

    def _move(self, new: State) -> None:
        old, self.state = self.state, new
        if new == "open":
            log.warning("breaker %s: %s -> open (%s)", self.name, old, self.last_failure)
        else:
            log.info("breaker %s: %s -> %s", self.name, old, new)
        if self._on_change is not None:
            self._on_change(self.name, old, new)
