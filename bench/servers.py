"""Servers under test as pinned subprocesses: start, wait until ready, stop cleanly.

Every server runs under `taskset -c <cores>` (the load generator gets the other cores), in its own
process group so that stopping it also stops what it started (Triton's Python-backend stubs), with
its output in a log file (a pipe nobody reads would block it). Thread pools are sized to the cores it
is pinned to: a pool larger than its cores only adds context switches.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class ServerError(RuntimeError):
    """A server exited or did not get ready; the message quotes its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: Sequence[str], cores: str | None) -> list[str]:
    """`taskset -c cores cmd` where taskset exists and cores are given, else cmd unchanged."""
    if cores and _have_taskset():
        return ["taskset", "-c", cores, *cmd]
    return list(cmd)


def _have_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def n_cores(cores: str) -> int:
    """Number of CPUs in a taskset list such as '0', '0-3' or '0,2'."""
    total = 0
    for part in cores.split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


def thread_env(cores: str) -> dict[str, str]:
    n = str(n_cores(cores))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Server:
    """One server process: `with Server(...) as s:` starts it and waits for `ready_url` to answer 200."""

    name: str
    cmd: list[str]
    ready_url: str
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cores: str | None = "0"
    ready_timeout_s: float = 180.0
    stop_grace_s: float = 15.0
    proc: subprocess.Popen[bytes] | None = None
    startup_s: float | None = None

    @property
    def command_line(self) -> str:
        """The command as run, with the environment it sets (for the report)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return f"{env} {shlex.join(pinned(self.cmd, self.cores))}".strip()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with self.log_path.open("wb") as log:
            log.write(f"$ {self.command_line}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                pinned(self.cmd, self.cores),
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - t0
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready:\n{tail(self.log_path)}"
                )
            if http_status(self.ready_url) == 200:
                return
            time.sleep(0.2)
        raise ServerError(f"{self.name} not ready after {self.ready_timeout_s:.0f} s:\n{tail(self.log_path)}")

    def stop(self) -> None:
        """SIGTERM to the process group (graceful drain), SIGKILL after the grace period.

        Signals go to the group only while its leader is alive: once it has been reaped its id may be reused.
        The Triton launcher stops its own server and stubs (they live in a session of their own)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---- the servers of the benchmark


def gateway(
    port: int,
    log_path: Path,
    *,
    artifacts: Path,
    repository: Path,
    device: str = "cpu",
    cores: str | None = "0",
    extra_env: Mapping[str, str] | None = None,
) -> Server:
    """`python -m serving` with the embedded backend (or Triton, via extra_env), ORT threads = pinned cores
    (cores=None: not pinned, one thread)."""
    env = {
        "SERVING_HOST": "127.0.0.1",
        "SERVING_PORT": str(port),
        "SERVING_ARTIFACTS": str(artifacts),
        "SERVING_MODEL_REPOSITORY": str(repository),
        "SERVING_EXECUTION_PROVIDER": device,
        "SERVING_ORT_INTRA_OP_THREADS": str(n_cores(cores or "0")),
        "SERVING_ORT_INTER_OP_THREADS": "1",
        "SERVING_RETRIEVAL_GPU": "auto" if device == "cuda" else "off",
        "SERVING_LOG_LEVEL": "warning",
        **thread_env(cores or "0"),
        **(extra_env or {}),
    }
    return Server("gateway", [sys.executable, "-m", "serving"], f"http://127.0.0.1:{port}/readyz", log_path, env, cores)


def naive(port: int, log_path: Path, *, artifacts: Path, device: str = "cpu", cores: str | None = "0") -> Server:
    """The naive peer (bench/baseline): FastAPI + eager PyTorch, one request at a time."""
    cmd = [sys.executable, "-m", "bench.baseline", "--port", str(port), "--artifacts", str(artifacts)]
    cmd += ["--device", device, "--threads", str(n_cores(cores or "0"))]
    return Server("naive", cmd, f"http://127.0.0.1:{port}/readyz", log_path, thread_env(cores or "0"), cores)


@dataclass(frozen=True)
class TritonPorts:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def pick(cls) -> TritonPorts:
        return cls(free_port(), free_port(), free_port())


def triton(
    ports: TritonPorts,
    log_path: Path,
    *,
    repository: Path,
    build_dir: Path,
    cores: str | None = "0",
    instances: int = 1,
) -> Server:
    """`python -m serving.triton` (the local tritonserver over a view of the repository), pinned like the gateway."""
    cmd = [sys.executable, "-m", "serving.triton", "--repository", str(repository), "--build-dir", str(build_dir)]
    cmd += ["--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics)]
    cmd += ["--instances", str(instances)]
    url = f"http://127.0.0.1:{ports.http}/v2/health/ready"
    return Server("triton", cmd, url, log_path, thread_env(cores or "0"), cores, ready_timeout_s=300.0)


@contextlib.contextmanager
def stopping(server: Server) -> Iterator[Server]:
    """An already started server, stopped on the way out."""
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """Start servers in order, stop them in reverse order."""
    started: list[Server] = []
    try:
        for s in servers:
            started.append(s.start())
        yield servers
    finally:
        for s in reversed(started):
            s.stop()
