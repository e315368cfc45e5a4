"""A real `python -m serving` process on the tiny models, for the tests that need signals, sockets and uvicorn.

`python -m tests.serving.gateway_process` is `python -m serving` (same `main()`, same uvicorn server, same
signal handling) with every model call made slower by GATEWAY_TEST_INFER_DELAY_S seconds (an asyncio sleep
in front of the embedded backend's `infer`, no CPU spent), so calls stay in flight, in the handler and in
the micro-batcher's queue, long enough for a test to send SIGTERM while they run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.serving import gateway_helpers as g

ROOT = Path(__file__).resolve().parents[2]
DELAY_ENV = "GATEWAY_TEST_INFER_DELAY_S"


def build(root: Path) -> Path:
    """The tiny model repository and artifacts under root (root/model_repository, root/artifacts)."""
    repo = g.build_repository(root / "model_repository")
    g.build_artifacts(root / "artifacts", repo)
    return root


@dataclass
class Gateway:
    proc: subprocess.Popen
    log: Path
    port: int
    grpc_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, limit: float = 60.0) -> float:
        """Seconds until /readyz answered 200 (gRPC starts before the HTTP socket opens)."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < limit:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"gateway not ready in time: {self.log.read_text()}")

    def inflight(self) -> float:
        """Requests the gateway counts in flight (HTTP and gRPC), this /metrics request included."""
        text = httpx.get(f"{self.base}/metrics", timeout=2).text
        return next(float(x.split()[1]) for x in text.splitlines() if x.startswith("gateway_inflight_requests "))

    def wait_inflight(self, n: int, limit: float = 20.0) -> None:
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            if self.inflight() >= n + 1:  # + the /metrics request itself
                return
            time.sleep(0.01)
        raise AssertionError(f"never {n} requests in flight (last: {self.inflight() - 1:g})")


@contextlib.contextmanager
def gateway(root: Path, delay_s: float = 0.0, **settings: str) -> Iterator[Gateway]:
    """A started gateway over root's tiny models; `settings` are SERVING_* variables without the prefix."""
    port, grpc_port = g.free_port(), g.free_port()
    env = {
        **os.environ,
        "SERVING_HOST": "127.0.0.1",
        "SERVING_PORT": str(port),
        "SERVING_GRPC_PORT": str(grpc_port),
        "SERVING_MODEL_REPOSITORY": str(root / "model_repository"),
        "SERVING_ARTIFACTS": str(root / "artifacts"),
        "SERVING_EXECUTION_PROVIDER": "cpu",
        "SERVING_ORT_INTRA_OP_THREADS": "1",
        # the slowness is the test's: no model budget or request deadline cuts a slow call short
        "SERVING_MODEL_TIMEOUT_MS": "60000",
        "SERVING_REQUEST_TIMEOUT_S": "60",
        **{f"SERVING_{k.upper()}": str(v) for k, v in settings.items()},
        DELAY_ENV: str(delay_s),
    }
    log = root / f"gateway-{port}.log"  # a file, not a pipe nobody drains while the server runs
    with log.open("w") as out:
        command = [sys.executable, "-m", "tests.serving.gateway_process"]
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        yield Gateway(proc, log, port, grpc_port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _main() -> None:
    import asyncio

    from serving.__main__ import main
    from serving.runtime.backends.embedded import EmbeddedBackend

    delay = float(os.environ.get(DELAY_ENV) or 0)
    if delay > 0:
        infer = EmbeddedBackend.infer

        async def slow_infer(self, model, inputs):  # type: ignore[no-untyped-def]
            await asyncio.sleep(delay)
            return await infer(self, model, inputs)

        EmbeddedBackend.infer = slow_infer  # type: ignore[method-assign]
    main([])


if __name__ == "__main__":
    _main()
