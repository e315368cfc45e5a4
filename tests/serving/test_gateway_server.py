"""`python -m serving` as a real uvicorn process on 127.0.0.1: cold start, endpoints, SIGHUP reload,
graceful shutdown that finishes the requests in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving import gateway_helpers as g

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]  # a real server process, ~6 s

ROOT = Path(__file__).resolve().parents[2]


def _wait_ready(base: str, proc: subprocess.Popen, log: Path, limit: float = 30.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("gateway not ready in time")


async def _in_flight_then_term(base: str, proc: subprocess.Popen, n: int) -> list[int]:
    """Start n slow requests, wait until the gateway is handling all of them, SIGTERM it, collect the answers."""
    body = {"history": ["i1", "i4"], "item_ids": ["i2", "i3", "i5", "i8"]}
    async with httpx.AsyncClient(base_url=base, timeout=15, limits=httpx.Limits(max_connections=n + 1)) as c:
        calls = [asyncio.ensure_future(c.post("/v1/rank", json=body)) for _ in range(n)]
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:
            text = (await c.get("/metrics")).text
            inflight = next(
                float(x.split()[1]) for x in text.splitlines() if x.startswith("gateway_inflight_requests ")
            )
            if inflight >= n + 1:  # the n requests and this /metrics one
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        return [r.status_code for r in await asyncio.gather(*calls)]


def test_real_server_start_reload_and_graceful_shutdown(tmp_path):
    repo = g.build_repository(tmp_path / "model_repository")
    g.build_artifacts(tmp_path / "artifacts", repo)
    port = g.free_port()
    env = {
        **os.environ,
        "SERVING_PORT": str(port),
        "SERVING_HOST": "127.0.0.1",
        "SERVING_MODEL_REPOSITORY": str(repo),
        "SERVING_ARTIFACTS": str(tmp_path / "artifacts"),
        "SERVING_EXECUTION_PROVIDER": "cpu",
        "SERVING_ORT_INTRA_OP_THREADS": "1",
        "SERVING_BATCH_MAX_DELAY_MS": "500",  # requests stay in flight long enough to be caught by SIGTERM
        "SERVING_DRAIN_TIMEOUT_S": "10",
    }
    log_file = tmp_path / "gateway.log"  # a file, not a pipe nobody drains while the server runs
    with log_file.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "serving"], cwd=ROOT, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        cold_start = _wait_ready(base, proc, log_file)
        print(f"cold start to /readyz 200: {cold_start:.2f} s")
        with httpx.Client(base_url=base, timeout=10) as c:
            rec = c.post("/v1/recommend", json={"user_id": 105, "k": 3})
            assert rec.status_code == 200 and len(rec.json()["items"]) == 3
            assert c.post("/v1/rank", json={"history": ["i1"], "item_ids": ["i2", "i3"]}).status_code == 200
            assert c.post("/v1/intent", json={"text": "my card"}).json()["results"][0]["intent"] in g.LABELS
            assert c.post("/v1/forecast", json={"store_id": 1, "item_id": 2}).status_code == 503
            assert c.post("/v1/rank", json={"history": ["zz"], "item_ids": ["i2"]}).status_code == 422

            # SIGHUP: export published a new DIN version and manifest; the gateway picks both up.
            g.add_din(repo, version=2, scale=1.5)
            g.write_repo_manifest(tmp_path / "artifacts", repo)
            proc.send_signal(signal.SIGHUP)
            deadline = time.perf_counter() + 20
            while time.perf_counter() < deadline:
                versions = {m["name"]: m["version"] for m in c.get("/v1/models").json()["models"]}
                if versions["din"] == 2:
                    break
                time.sleep(0.05)
            assert versions["din"] == 2

        # SIGTERM with requests in flight: each of them still gets its answer, then the process exits.
        codes = asyncio.run(_in_flight_then_term(base, proc, 6))
        assert codes == [200] * 6
        # uvicorn re-raises the caught SIGTERM after its clean shutdown, so the exit status names that signal.
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/healthz", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log = log_file.read_text()
    assert "Traceback" not in log, log
    assert "Application shutdown complete" in log, log
