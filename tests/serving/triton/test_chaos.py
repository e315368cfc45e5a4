"""Chaos on a real Triton server under load: killed (SIGKILL) and frozen (SIGSTOP), then back.

The gateway runs over the local pip tritonserver on the tiny models; shoppers send known users'
/v1/recommend (and some /v1/intent) the whole time. During the outage answers must stay 200, flagged
`degraded` (recommend falls back, intent hands off), and the gateway must serve the models again by
itself once Triton is back. Latencies are printed for the closing note, not asserted (bench/ owns speed).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from serving.app import create_app
from serving.runtime.settings import Settings
from serving.triton import Ports, TritonServer
from serving.triton.launcher import free_port
from tests.serving import gateway_helpers as g
from tests.serving.triton.helpers import require_tritonserver

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.asyncio]

USERS = [101, 102, 103, 104, 105]
THINK_S = 0.02


class Shoppers:
    """`n` concurrent clients; every answer is recorded as (time, route, status, degraded, seconds)."""

    def __init__(self, client, n: int = 8):
        self.client, self.n, self.log = client, n, []
        self.stop = False

    async def _one(self, k: int) -> None:
        i = 0
        while not self.stop:
            i += 1
            t0 = time.perf_counter()
            if i % 5 == 0:
                r = await self.client.post("/v1/intent", json={"text": "my card"})
                route = "intent"
            else:
                r = await self.client.post("/v1/recommend", json={"user_id": USERS[(i + k) % len(USERS)], "k": 3})
                route = "recommend"
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if body.get("fallback"):  # a user without history: no model answers it, so not part of the measure
                await asyncio.sleep(THINK_S)
                continue
            took = time.perf_counter() - t0
            self.log.append((time.monotonic(), route, r.status_code, bool(body.get("degraded")), took))
            # A shopper's think time. In process there is no network: a flat-out loop of 1 ms degraded answers
            # would starve the co-located Triton of CPU (and the test's own coroutine), not test the gateway.
            await asyncio.sleep(THINK_S)

    async def __aenter__(self):
        self.tasks = [asyncio.ensure_future(self._one(k)) for k in range(self.n)]
        return self

    async def __aexit__(self, *exc):
        self.stop = True
        await asyncio.gather(*self.tasks)

    def between(self, t0: float, t1: float, route: str | None = None) -> list[tuple]:
        return [e for e in self.log if t0 <= e[0] < t1 and (route is None or e[1] == route)]


def _summary(name: str, rows: list[tuple]) -> dict:
    ms = np.array([r[4] for r in rows]) * 1e3
    ok = sum(r[2] == 200 for r in rows)
    out = {
        "answers": len(rows),
        "ok_share": ok / max(len(rows), 1),
        "degraded_share": sum(r[3] for r in rows) / max(len(rows), 1),
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "statuses": sorted({r[2] for r in rows}),
    }
    print(f"{name}: {out}")
    return out


async def _until_healthy(shoppers: Shoppers, t: float, limit_s: float = 45.0) -> None:
    """Keep the load on until a whole (not degraded) answer comes back, or `limit_s` passes. After a freeze,
    Triton's Python backend may restart stubs it saw as unresponsive; until their models are ready again the
    gateway rightly keeps degrading, so the limit is generous (the figure is the time measured)."""
    deadline = time.monotonic() + limit_s
    while _first_healthy_after(shoppers, t) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)


def _first_healthy_after(shoppers: Shoppers, t: float) -> float | None:
    return next(
        (e[0] - t for e in shoppers.log if e[0] >= t and e[1] == "recommend" and not e[3] and e[2] == 200), None
    )


async def _back_after_freeze(server, start, shoppers: Shoppers, t_cont: float, limit_s: float = 10.0):
    """-> (when Triton was back, the server). The pip tritonserver sometimes exits after a freeze instead of
    restarting the Python-backend stubs that missed their heartbeat (1 run in 3 here, before and after the
    gateway's hot-path work). A Deployment would start it again; so does the test, and then the gateway must
    serve again by itself, which is what is asserted."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and _first_healthy_after(shoppers, t_cont) is None:
        if not server.running:
            await asyncio.to_thread(server.stop)  # reap it; the shoppers go on meanwhile
            server = await asyncio.to_thread(start)
            return time.monotonic(), server
        await asyncio.sleep(0.1)
    return t_cont, server


@pytest.fixture
def setup(tmp_path: Path):
    require_tritonserver()
    repo = g.build_repository(tmp_path / "model_repository")
    g.build_artifacts(tmp_path / "artifacts", repo)
    ports = Ports(http=free_port(), grpc=free_port(), metrics=free_port())

    def start() -> TritonServer:
        return TritonServer(repo, build_dir=tmp_path / "build", ports=ports, instance_count=1).start()

    return tmp_path, start


def _gateway_over(server: TritonServer, root: Path):
    """The gateway app on the Triton backend, with the default model budget and breakers."""
    s = Settings(
        backend="triton",
        triton_url=server.grpc_url,
        model_repository=root / "model_repository",
        artifacts=root / "artifacts",
        grpc_enabled=False,
    )
    return create_app(s)


async def test_triton_killed_under_load_degrades_then_recovers(setup) -> None:
    root, start = setup
    server = start()
    app = _gateway_over(server, root)
    try:
        async with g.serve(app) as client, Shoppers(client) as shoppers:
            await asyncio.sleep(1.5)
            t_kill = time.monotonic()
            os.killpg(server.pid, signal.SIGKILL)
            await asyncio.sleep(3.0)
            t_restart = time.monotonic()
            await asyncio.to_thread(server.stop)  # reap the killed group; the shoppers go on meanwhile
            server = await asyncio.to_thread(start)
            t_ready = time.monotonic()
            await _until_healthy(shoppers, t_ready)
        healthy = _summary("before", shoppers.between(0, t_kill))
        outage = shoppers.between(t_kill + 0.05, t_restart)
        out = _summary("killed", outage)
        rec = _summary("killed recommend", [e for e in outage if e[1] == "recommend"])
        recovery = _first_healthy_after(shoppers, t_ready)
        print(f"recovery after Triton ready: {recovery} s (restart took {t_ready - t_restart:.1f} s)")
        # Before the kill: whole answers (a rare call past the 150 ms budget on a loaded CI core may degrade).
        assert healthy["ok_share"] == 1.0 and healthy["degraded_share"] <= 0.02, healthy
        assert out["answers"] > 50 and rec["ok_share"] >= 0.99, out
        assert rec["degraded_share"] >= 0.99
        assert recovery is not None, "the gateway did not serve the models again after Triton came back"
    finally:
        server.stop()


async def test_triton_frozen_answers_degrade_within_the_budget(setup) -> None:
    root, start = setup
    server = start()
    app = _gateway_over(server, root)
    try:
        async with g.serve(app) as client, Shoppers(client) as shoppers:
            await asyncio.sleep(1.0)
            t_stop = time.monotonic()
            os.killpg(server.pid, signal.SIGSTOP)
            await asyncio.sleep(3.0)
            t_cont = time.monotonic()
            os.killpg(server.pid, signal.SIGCONT)
            t_back, server = await _back_after_freeze(server, start, shoppers, t_cont)
            await _until_healthy(shoppers, t_back)
        frozen = _summary("frozen", shoppers.between(t_stop + 0.05, t_cont))
        recovery = _first_healthy_after(shoppers, t_back)
        print(f"recovery after Triton was back: {recovery} s (restarted: {t_back != t_cont})")
        assert 504 not in frozen["statuses"] and frozen["ok_share"] >= 0.99, frozen
        assert frozen["degraded_share"] >= 0.9
        assert recovery is not None
    finally:
        server.stop()
