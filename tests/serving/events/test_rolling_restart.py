"""A rolling restart of two real gateway replicas on one real redis-server, under load: no request in rotation
fails, no accepted event is lost, and what users did before the restart still personalises after it.

The test plays the Service in front of the replicas (docker/k8s): requests go round the replicas in rotation;
a replica leaves the rotation before its SIGTERM (as a pod's endpoint is removed while its preStop hook
sleeps), drains what it accepted, and its replacement joins once /readyz says ready. Each replica's model
calls take 20 ms longer (tests/serving/gateway_process.py; embedded backend) so requests are in flight when
SIGTERM arrives. With the triton marker the same restart runs with the replicas on one real local Triton.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.contracts.events import LOG_GLOB
from serving.triton import Ports, TritonServer
from serving.triton.launcher import free_port
from tests.serving import gateway_process as gp
from tests.serving.triton.helpers import require_tritonserver

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]  # four gateway starts, ~30 s

USERS = [f"roll-{n}" for n in range(6)]


class Rotation:
    """The replicas taking traffic, round robin; thread-safe."""

    def __init__(self, *bases: str):
        self._bases, self._lock, self._n = list(bases), threading.Lock(), 0

    def next(self) -> str:
        with self._lock:
            self._n += 1
            return self._bases[self._n % len(self._bases)]

    def remove(self, base: str) -> None:
        with self._lock:
            self._bases.remove(base)

    def add(self, base: str) -> None:
        with self._lock:
            self._bases.append(base)


def _shopper(k: int, rotation: Rotation, stop: threading.Event, log: list, lock: threading.Lock) -> None:
    """Clicks then asks for recommendations, again and again, each request to whichever replica is next."""
    user = USERS[k % len(USERS)]
    i = 0
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            i += 1
            base = rotation.next()
            try:
                if i % 2:
                    body = {"events": [{"user_id": user, "item_id": f"i{(k * 7 + i) % 40 + 1}", "event_type": "click"}]}
                    r = client.post(f"{base}/v1/events", json=body)
                    accepted = r.json().get("accepted", 0) if r.status_code == 200 else 0
                    entry = ("events", r.status_code, accepted)
                else:
                    r = client.post(f"{base}/v1/recommend", json={"user_id": user, "k": 5})
                    entry = ("recommend", r.status_code, 0)
            except httpx.TransportError as exc:  # a replica in rotation must never refuse or drop a request
                entry = ("transport", type(exc).__name__, 0)
            with lock:
                log.append(entry)


@contextlib.contextmanager
def _models(root: Path, backend: str) -> Iterator[dict[str, str]]:
    """The replicas' model settings: in-process models each, or one local Triton that all of them share (the
    Deployment on GPU nodes of docker/k8s), which keeps serving while the gateways restart."""
    if backend == "embedded":
        yield {}
        return
    require_tritonserver()
    ports = Ports(http=free_port(), grpc=free_port(), metrics=free_port())
    server = TritonServer(root / "model_repository", build_dir=root / "triton", ports=ports, instance_count=1)
    with server:
        yield {"backend": "triton", "triton_url": server.grpc_url}


@pytest.mark.parametrize("backend", ["embedded", pytest.param("triton", marks=pytest.mark.triton)])
def test_rolling_restart_under_load_loses_nothing(tmp_path, redis_server, backend):
    root = gp.build(tmp_path)
    store = {"online_store": redis_server.url, "online_timeout_ms": "1000", "event_log_flush_s": "60"}
    stop, lock, log = threading.Event(), threading.Lock(), []
    with contextlib.ExitStack() as stack:
        store |= stack.enter_context(_models(root, backend))
        a = stack.enter_context(gp.gateway(root, delay_s=0.02, **store))
        b = stack.enter_context(gp.gateway(root, delay_s=0.02, **store))
        a.wait_ready()
        b.wait_ready()
        rotation = Rotation(a.base, b.base)
        shoppers = [threading.Thread(target=_shopper, args=(k, rotation, stop, log, lock)) for k in range(6)]
        for t in shoppers:
            t.start()
        time.sleep(1.5)
        before_restart = len(log)
        replacements = []
        for old in (a, b):  # one replica at a time
            fresh = stack.enter_context(gp.gateway(root, delay_s=0.02, **store))
            replacements.append(fresh)
            fresh.wait_ready()
            rotation.add(fresh.base)
            rotation.remove(old.base)
            time.sleep(0.3)  # requests already sent to it are still in flight: the drain must finish them
            old.proc.send_signal(signal.SIGTERM)
            assert old.proc.wait(timeout=30) in (0, -signal.SIGTERM)
            time.sleep(1.0)
        stop.set()
        for t in shoppers:
            t.join(timeout=30)
        # What users did before the restart still personalises on the new replicas (it lives in Redis).
        with httpx.Client(base_url=fresh.base, timeout=10) as c:
            served = c.post("/v1/recommend", json={"user_id": USERS[0], "k": 5}).json()
        assert served["fallback"] is False and served["degraded"] is False, served
        for gw in replacements:
            gw.proc.send_signal(signal.SIGTERM)
        for gw in replacements:
            assert gw.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    transport = [e for e in log if e[0] == "transport"]
    assert not transport, transport[:5]  # no request to a replica in rotation was refused or cut
    assert {e[1] for e in log} == {200}, {e[1] for e in log}
    assert before_restart > 20 and len(log) > before_restart + 50  # load the whole time
    accepted = sum(e[2] for e in log if e[0] == "events")
    lines = [json.loads(x) for f in (root / "events").glob(LOG_GLOB) for x in f.read_text().splitlines()]
    print(f"{len(log)} requests, {before_restart} before the restarts; {accepted} events accepted, {len(lines)} logged")
    assert accepted > 0 and len(lines) == accepted  # every accepted event is in the log, across four processes
    for gw in (a, b, *replacements):
        assert "Traceback" not in gw.log.read_text()
