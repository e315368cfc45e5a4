"""`python -m serving` as a real process serves gRPC beside HTTP: health SERVING once ready, answers, and on
SIGTERM a call in flight still gets its answer before the process exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.proto import example_client
from serving.proto import storefront_pb2 as pb
from serving.proto import storefront_pb2_grpc as pb_grpc
from tests.serving import gateway_helpers as g

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]  # a real server process, a few seconds

ROOT = Path(__file__).resolve().parents[3]
SERVING = health_pb2.HealthCheckResponse.SERVING


def _wait_serving(channel: grpc.Channel, proc: subprocess.Popen, log: Path, limit: float = 30.0) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode}: {log.read_text()}")
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING:
                return
        except grpc.RpcError:  # not listening yet: gRPC starts once the models are loaded
            pass
        time.sleep(0.05)
    raise AssertionError("gRPC not serving in time")


def test_process_serves_grpc_and_drains_it_on_sigterm(tmp_path, capsys):
    repo = g.build_repository(tmp_path / "model_repository")
    g.build_artifacts(tmp_path / "artifacts", repo)
    port = g.free_port()
    env = {
        **os.environ,
        "SERVING_PORT": str(g.free_port()),
        "SERVING_GRPC_PORT": str(port),
        "SERVING_MODEL_REPOSITORY": str(repo),
        "SERVING_ARTIFACTS": str(tmp_path / "artifacts"),
        "SERVING_EXECUTION_PROVIDER": "cpu",
        "SERVING_ORT_INTRA_OP_THREADS": "1",
        "SERVING_BATCH_MAX_DELAY_MS": "500",  # a call stays in flight long enough to be caught by SIGTERM
    }
    log_file = tmp_path / "gateway.log"
    with log_file.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "serving"], cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            _wait_serving(channel, proc, log_file)
            api = pb_grpc.StorefrontStub(channel)
            request = pb.RankRequest(history=[pb.Id(string_value="i1")], item_ids=[pb.Id(string_value="i2")])
            assert len(api.Rank(request, timeout=5).items) == 1
            example_client.main(["--target", f"127.0.0.1:{port}", "--user", "105", "--timeout", "5"])  # README's
            shown = capsys.readouterr().out
            assert "health: SERVING" in shown and "k=1000 -> INVALID_ARGUMENT: k: Input should be" in shown, shown
            in_flight = api.Rank.future(request, timeout=10)
            time.sleep(0.2)  # the call waits in the batcher for its 500 ms delay
            proc.send_signal(signal.SIGTERM)
            assert len(in_flight.result().items) == 1
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_file.read_text()
    assert "gRPC API on 127.0.0.1:" in log and "Traceback" not in log, log
