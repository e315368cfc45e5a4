"""SIGTERM against a real gateway process with 100 concurrent gRPC calls on one channel: none is CANCELLED.

Every call the gateway accepted before the signal (running, or waiting in the micro-batcher's queue) gets
its answer; a call sent once health says NOT_SERVING gets UNAVAILABLE with `error-code: shutting_down` and
`retry-after` (clients retry UNAVAILABLE, not CANCELLED); a health watcher sees NOT_SERVING before the
process exits. Repeated GRPC_DRAIN_REPEATS times (default 3; the closing figure used 10). A second test sends
the signal while the calls still arrive: those the gateway had not taken yet get UNAVAILABLE, none CANCELLED.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.grpc.server import SERVICE
from serving.proto import storefront_pb2 as pb
from serving.proto import storefront_pb2_grpc as pb_grpc
from tests.serving import gateway_process as gp

REPEATS = int(os.environ.get("GRPC_DRAIN_REPEATS", "3"))
CALLS, LATE_CALLS = 100, 10
DELAY_S, BATCH = 0.4, 10  # 100 one-row calls in batches of 10, each 0.4 s: about 4 s of queue at SIGTERM

pytestmark = [pytest.mark.timeout(60 + 40 * REPEATS), pytest.mark.slow]

Health = health_pb2.HealthCheckResponse
RANK = pb.RankRequest(history=[pb.Id(string_value="i1")], item_ids=[pb.Id(string_value="i2")])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return gp.build(tmp_path_factory.mktemp("drain"))


class Watcher(threading.Thread):
    """grpc.health.v1 Watch on the test's channel: every status with the time it arrived."""

    def __init__(self, channel: grpc.Channel):
        super().__init__(daemon=True)
        self.stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        self.seen: list[tuple[float, int]] = []
        self.changed = threading.Condition()

    def run(self) -> None:
        try:
            for reply in self.stream:
                with self.changed:
                    self.seen.append((time.perf_counter(), reply.status))
                    self.changed.notify_all()
        except grpc.RpcError:  # the server went away: the stream ends
            pass

    def first(self, status: int, timeout: float) -> float | None:
        with self.changed:
            self.changed.wait_for(lambda: any(s == status for _, s in self.seen), timeout)
        return next((t for t, s in self.seen if s == status), None)


def code_of(future: grpc.Future) -> tuple[str, dict[str, str]]:
    try:
        future.result()
    except grpc.RpcError as err:
        return err.code().name, dict(err.trailing_metadata() or ())
    return "OK", {}


@dataclass
class Run:
    accepted: collections.Counter = field(default_factory=collections.Counter)  # the 100, sent before SIGTERM
    refused_meta: list[dict[str, str]] = field(default_factory=list)  # of those of the 100 that were not OK
    late: collections.Counter = field(default_factory=collections.Counter)  # sent once NOT_SERVING was seen
    late_meta: list[dict[str, str]] = field(default_factory=list)
    after_exit: str = ""
    not_serving_s: float | None = None  # after the signal
    exit_s: float = 0.0
    exit_code: int | None = None

    def summary(self) -> str:
        ns = "never" if self.not_serving_s is None else f"{self.not_serving_s:.3f} s"
        return (
            f"accepted {dict(self.accepted)}, late {dict(self.late)}, after exit {self.after_exit}, "
            f"NOT_SERVING at {ns}, exit at {self.exit_s:.2f} s (rc {self.exit_code})"
        )


def one_run(root, taken: int = CALLS) -> Run:
    """100 calls, SIGTERM once `taken` of them reached the gateway's handler (all: none still on its way)."""
    run = Run()
    with (
        gp.gateway(root, delay_s=DELAY_S, batch_max_size=BATCH, drain_timeout_s=20) as gw,
    ):
        gw.wait_ready()
        with grpc.insecure_channel(gw.grpc_target) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            watcher = Watcher(channel)
            watcher.start()
            assert watcher.first(Health.SERVING, 10) is not None, "health never SERVING"
            api = pb_grpc.StorefrontStub(channel)
            calls = [api.Rank.future(RANK, timeout=30) for _ in range(CALLS)]
            deadline = time.perf_counter() + 20
            while gw.inflight() - 1 + sum(c.done() for c in calls) < taken:
                assert time.perf_counter() < deadline, "the calls never all reached the gateway"
                time.sleep(0.01)
            t_signal = time.perf_counter()
            gw.proc.send_signal(signal.SIGTERM)
            seen = watcher.first(Health.NOT_SERVING, 5)
            run.not_serving_s = None if seen is None else seen - t_signal
            late = [api.Rank.future(RANK, timeout=10) for _ in range(LATE_CALLS)] if seen is not None else []
            for call in calls:
                code, meta = code_of(call)
                run.accepted[code] += 1
                if code != "OK":
                    run.refused_meta.append(meta)
            for call in late:
                code, meta = code_of(call)
                run.late[code] += 1
                run.late_meta.append(meta)
            run.exit_code = gw.proc.wait(timeout=30)
            run.exit_s = time.perf_counter() - t_signal
            run.after_exit = code_of(api.Rank.future(RANK, timeout=5))[0]
            watcher.join(5)
        log = gw.log.read_text()
    assert "Traceback" not in log, log
    return run


def test_sigterm_with_100_concurrent_calls_cancels_none(built):
    runs = []
    for i in range(REPEATS):
        runs.append(one_run(built))
        print(f"run {i + 1}: {runs[-1].summary()}")
    table = "\n".join(f"run {i + 1}: {r.summary()}" for i, r in enumerate(runs))
    for r in runs:
        assert r.accepted == {"OK": CALLS}, table  # 0 CANCELLED, every accepted call answered
        assert r.not_serving_s is not None and r.not_serving_s < r.exit_s, table
        assert r.late == {"UNAVAILABLE": LATE_CALLS}, table
        assert all(m.get("error-code") == "shutting_down" and m.get("retry-after") for m in r.late_meta), table
        assert r.after_exit == "UNAVAILABLE", table
        assert r.exit_code in (0, -signal.SIGTERM), table


def test_sigterm_while_calls_still_arrive_cancels_none(built):
    """The signal lands while the 100 calls are still reaching the gateway: a call it took before the signal is
    answered, one it had not taken yet is refused with UNAVAILABLE (shutting_down) for the client to retry."""
    runs = [one_run(built, taken=BATCH) for _ in range(max(1, REPEATS // 3))]
    table = "\n".join(f"run {i + 1}: {r.summary()}" for i, r in enumerate(runs))
    print(table)
    for r in runs:
        assert set(r.accepted) <= {"OK", "UNAVAILABLE"} and r.accepted["OK"] > 0, table
        assert all(m.get("error-code") == "shutting_down" for m in r.refused_meta), table
        assert r.late == {"UNAVAILABLE": LATE_CALLS}, table
