"""SIGTERM against a real gateway process: HTTP and gRPC drain side by side, not one after the other.

A slow HTTP request and slow gRPC calls are in flight at the signal, and a gRPC health watcher is connected.
While the HTTP request still runs, gRPC health is already NOT_SERVING and a new gRPC call gets UNAVAILABLE;
both the HTTP request and the gRPC calls get their answers, and the process exits about when the slowest of
them is done (drained one after the other, it took that plus the gRPC drain, or the whole drain timeout
while a Watch stream was open).
"""

from __future__ import annotations

import concurrent.futures
import signal
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from serving.proto import storefront_pb2 as pb
from serving.proto import storefront_pb2_grpc as pb_grpc
from tests.serving import gateway_process as gp
from tests.serving.grpc.test_grpc_drain import Watcher, code_of

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

DELAY_S = 3.0  # every model call; no batching, so concurrent calls all take this long side by side
GRPC_CALLS = 5


def test_http_and_grpc_drain_side_by_side(tmp_path):
    root = gp.build(tmp_path)
    rank = pb.RankRequest(history=[pb.Id(string_value="i1")], item_ids=[pb.Id(string_value="i2")])
    body = {"history": ["i1"], "item_ids": ["i2", "i3"]}
    with (
        gp.gateway(root, delay_s=DELAY_S, batching="false", drain_timeout_s=20) as gw,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        gw.wait_ready()
        with grpc.insecure_channel(gw.grpc_target) as channel:
            watcher = Watcher(channel)
            watcher.start()
            assert watcher.first(health_pb2.HealthCheckResponse.SERVING, 10) is not None
            api = pb_grpc.StorefrontStub(channel)
            t0 = time.perf_counter()
            http_call = pool.submit(httpx.post, f"{gw.base}/v1/rank", json=body, timeout=30)
            grpc_calls = [api.Rank.future(rank, timeout=30) for _ in range(GRPC_CALLS)]
            gw.wait_inflight(GRPC_CALLS + 1)
            t_signal = time.perf_counter()
            gw.proc.send_signal(signal.SIGTERM)
            not_serving = watcher.first(health_pb2.HealthCheckResponse.NOT_SERVING, 5)
            late = code_of(api.Rank.future(rank, timeout=10))
            http_still_running = not http_call.done()
            answer = http_call.result()
            t_http = time.perf_counter()
            codes = [code_of(c)[0] for c in grpc_calls]
            rc = gw.proc.wait(timeout=30)
            t_exit = time.perf_counter()
            watcher.join(5)
        log = gw.log.read_text()
    assert answer.status_code == 200, answer.text
    assert codes == ["OK"] * GRPC_CALLS
    assert not_serving is not None and not_serving - t_signal < 0.5, "gRPC health waited for the HTTP drain"
    assert http_still_running, "the HTTP request ended before the gRPC checks: make DELAY_S longer"
    assert late[0] == "UNAVAILABLE" and late[1].get("error-code") == "shutting_down", late
    busy_s = t_http - t0  # the slowest request; drained one after the other, shutdown took longer than that
    assert t_exit - t0 < busy_s + 1.5, f"requests done after {busy_s:.2f} s, process exited after {t_exit - t0:.2f} s"
    assert rc in (0, -signal.SIGTERM)
    assert "Traceback" not in log and "Application shutdown complete" in log, log
    print(
        f"SIGTERM at {t_signal - t0:.2f} s, NOT_SERVING +{not_serving - t_signal:.3f} s, HTTP answered at "
        f"{t_http - t0:.2f} s, exit at {t_exit - t0:.2f} s"
    )
