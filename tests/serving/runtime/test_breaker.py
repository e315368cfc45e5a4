"""The circuit breaker's states, on a clock the test moves (no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from serving.runtime.breaker import CircuitBreaker, ModelUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fail(b: CircuitBreaker, times: int, why: str = "timeout") -> None:
    for _ in range(times):
        b.before_call()
        b.failure(why)


def _breaker(clock: Clock, changes: list) -> CircuitBreaker:
    return CircuitBreaker(
        "din", failures_to_open=3, reset_s=0.5, clock=clock, on_change=lambda n, a, b: changes.append((a, b))
    )


def test_opens_after_failures_in_a_row_and_fails_fast() -> None:
    clock, changes = Clock(), []
    b = _breaker(clock, changes)
    _fail(b, 2, "unreachable")
    b.before_call()
    b.success()  # a success in between resets the count
    _fail(b, 3, "unreachable")
    assert b.state == "open" and changes == [("closed", "open")]
    with pytest.raises(ModelUnavailable, match="circuit open after: unreachable"):
        b.before_call()


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    clock, changes = Clock(), []
    b = _breaker(clock, changes)
    _fail(b, 3, "timeout")
    clock.now = 0.6
    b.before_call()  # the probe
    assert b.state == "half_open"
    with pytest.raises(ModelUnavailable, match="probe"):
        b.before_call()  # a second caller while the probe runs
    b.success()
    assert b.state == "closed" and changes[-1] == ("half_open", "closed")
    b.before_call()


def test_a_failed_probe_opens_again_for_another_reset_period() -> None:
    clock, changes = Clock(), []
    b = _breaker(clock, changes)
    _fail(b, 3, "timeout")
    clock.now = 0.6
    b.before_call()
    b.failure("still down")
    assert b.state == "open"
    clock.now = 0.9  # 0.3 s after reopening: still open
    with pytest.raises(ModelUnavailable, match="still down"):
        b.before_call()
    clock.now = 1.2
    b.before_call()
    assert b.state == "half_open"


def test_a_cancelled_probe_frees_the_probe_slot() -> None:
    clock, changes = Clock(), []
    b = _breaker(clock, changes)
    _fail(b, 3, "x")
    clock.now = 1.0
    b.before_call()
    b.cancelled()
    b.before_call()  # the next caller may probe
    assert b.state == "half_open"


@pytest.mark.asyncio
async def test_a_background_probe_keeps_every_caller_fast_and_closes_on_ready() -> None:
    clock, ready = Clock(), asyncio.Event()

    async def probe() -> bool:
        await ready.wait()  # a frozen server: the probe waits, no caller does
        return True

    b = CircuitBreaker("din", failures_to_open=1, reset_s=0.5, clock=clock, probe=probe)
    b.before_call()
    b.failure("timeout")
    clock.now = 1.0
    for _ in range(3):
        with pytest.raises(ModelUnavailable, match="probe"):
            b.before_call()
    assert b.state == "half_open"
    ready.set()
    await asyncio.sleep(0.01)
    assert b.state == "closed"
    b.before_call()


@pytest.mark.asyncio
async def test_a_failed_background_probe_opens_the_circuit_again() -> None:
    clock = Clock()

    async def probe() -> bool:
        return False

    b = CircuitBreaker("din", failures_to_open=1, reset_s=0.5, clock=clock, probe=probe)
    b.before_call()
    b.failure("down")
    clock.now = 1.0
    with pytest.raises(ModelUnavailable):
        b.before_call()
    await asyncio.sleep(0.01)
    assert b.state == "open" and "probe" in b.last_failure
