"""Start and stop a local `tritonserver` (from the nvidia-pytriton wheel) over a view of the model repository.

    with TritonServer("model_repository", build_dir=tmp) as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)

`start()` builds the view (serving/triton/view.py), assembles the Python backend folder (dist.py), picks
ports (0 = a free one), starts the server in its own process group with its log streamed to a file, and
waits until the server and every model of the view are ready. A failure raises `TritonStartError` with the
models that failed, their reasons and the log's tail. `stop()` sends SIGTERM to the whole group (server and
Python stubs), SIGKILL after a grace period, and returns only when no process of the group is left.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn, Self

from serving.triton.dist import TritonDist, find_dist, prepare_backends, server_env
from serving.triton.view import View, build_view

log = logging.getLogger("serving.triton")

_PORT_IN_USE = re.compile(r"Socket '[^']*:(\d+)' already in use")  # Triton's message when a bind fails
_ERROR_LINE = re.compile(r"^E\d{4} ")  # glog severity E + MMDD
_LOAD_FAILED = re.compile(r"failed to load '([^']+)'(?: version \d+)?: (.*?)\"?$")


class TritonStartError(RuntimeError):
    """The server exited or did not get ready in time; the message names the models and quotes the log."""


@dataclass(frozen=True)
class Ports:
    http: int = 0  # 0 = pick a free port at start
    grpc: int = 0
    metrics: int = 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def failed_models(log_text: str) -> dict[str, str]:
    """{model: reason} from Triton's "failed to load" lines."""
    found = {}
    for line in log_text.splitlines():
        if m := _LOAD_FAILED.search(line):
            # The log escapes newlines; the Python traceback after the first one is noise in a start error.
            found[m.group(1)] = m.group(2).split("\\n")[0].strip()
    return found


class TritonServer:
    """A local tritonserver over a generated view of `repository`. Context manager; `stop()` is idempotent."""

    def __init__(
        self,
        repository: str | Path = "model_repository",
        *,
        build_dir: str | Path = ".triton",
        host: str = "127.0.0.1",
        ports: Ports = Ports(),
        instance_count: int | None = None,
        ready_timeout_s: float = 120.0,
        stop_grace_s: float = 10.0,
        log_verbose: int = 0,
        extra_args: tuple[str, ...] = (),
    ):
        self.repository = Path(repository)
        self.build_dir = Path(build_dir)
        self.host = host
        self.requested_ports = ports
        self.instance_count = instance_count
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.log_verbose = log_verbose
        self.extra_args = extra_args
        self.log_path = self.build_dir / "tritonserver.log"
        self.ports = ports
        self.view: View | None = None
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # ---- addresses (tritonclient takes host:port, without a scheme)

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_url(self) -> str:
        return f"{self._client_host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.ports.metrics}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def models(self) -> list[str]:
        return sorted(self.view.models) if self.view else []

    # ---- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("server already started")
        t0 = time.perf_counter()
        dist = find_dist()
        if not self.build_dir.exists():
            self.build_dir.mkdir(parents=True)
            # Our own folder: keep what is generated in it out of git without touching the project's .gitignore.
            (self.build_dir / ".gitignore").write_text("*\n")
        self.view = build_view(self.repository, self.build_dir / "repository", instance_count=self.instance_count)
        backends = prepare_backends(dist, self.build_dir / "backends")
        configured = {self.requested_ports.http, self.requested_ports.grpc, self.requested_ports.metrics} - {0}
        for attempt in range(3):
            self._launch(dist, backends)
            try:
                self._wait_ready()
                break
            except TritonStartError as exc:
                self.stop()
                # A port we picked as free can be taken before Triton binds it: pick again. A configured one: raise.
                taken = _PORT_IN_USE.search(tail(self.log_path, 200))
                if attempt == 2 or taken is None or int(taken.group(1)) in configured:
                    raise exc from None
                log.warning("port %s was taken while Triton started; retrying with new ports", taken.group(1))
            except BaseException:  # Ctrl-C while waiting: no server may outlive the failed start
                self.stop()
                raise
        self.startup_s = time.perf_counter() - t0
        log.info("tritonserver ready in %.1f s: grpc %s, http %s", self.startup_s, self.grpc_url, self.http_url)
        return self

    def _resolve_ports(self) -> Ports:
        p = self.requested_ports
        pick = free_port if self.host in ("127.0.0.1", "localhost") else (lambda: free_port(""))
        return Ports(http=p.http or pick(), grpc=p.grpc or pick(), metrics=p.metrics or pick())

    def command(self, dist: TritonDist, backends: Path) -> list[str]:
        assert self.view is not None
        return [
            str(dist.binary),
            f"--model-repository={self.view.path}",
            f"--backend-directory={backends}",
            # Python-backend shared memory is named by this prefix: unique, so parallel servers never collide.
            f"--backend-config=python,shm-region-prefix-name=shopserve_{os.getpid()}_{uuid.uuid4().hex[:8]}",
            f"--http-address={self.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-gpu-metrics=false",  # no NVML here; it would only log an error
            "--pinned-memory-pool-byte-size=0",  # pinned memory needs CUDA; the CPU server never uses it
            "--strict-readiness=true",
            f"--exit-timeout-secs={max(1, int(self.stop_grace_s) - 2)}",  # finish in-flight calls within our grace
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def _launch(self, dist: TritonDist, backends: Path) -> None:
        self.ports = self._resolve_ports()
        cmd = self.command(dist, backends)
        self._log_file = self.log_path.open("wb")
        self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
        self._log_file.flush()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=server_env(dist),
            start_new_session=True,  # its own process group: stop() reaches the Python stubs too
        )
        atexit.register(self.stop)  # an interpreter exiting on an exception still leaves no server behind

    # ---- readiness

    def _get(self, path: str, timeout: float = 1.0, data: bytes | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://{self.http_url}{path}", data=data, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def model_states(self) -> dict[str, tuple[str, str]]:
        """{model: (state, reason)} from Triton's repository index (empty when the server does not answer)."""
        status, body = self._get("/v2/repository/index", data=b"{}")
        if status != 200:
            return {}
        return {m["name"]: (m.get("state", ""), m.get("reason", "")) for m in json.loads(body)}

    def _wait_ready(self) -> None:
        assert self._proc is not None and self.view is not None
        deadline = time.monotonic() + self.ready_timeout_s
        pending = set(self.view.models)
        server_ready = False
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._fail(f"tritonserver exited with code {self._proc.returncode} before it was ready")
            if not server_ready:
                server_ready = self._get("/v2/health/ready")[0] == 200
            if server_ready:
                pending = {m for m in pending if self._get(f"/v2/models/{m}/ready")[0] != 200}
                if not pending:
                    return
            time.sleep(0.1)
        self._fail(f"tritonserver not ready after {self.ready_timeout_s:.0f} s (waiting for {sorted(pending)})")

    def _fail(self, what: str) -> NoReturn:
        text = tail(self.log_path, 400)
        reasons = failed_models(text)
        for name, (state, reason) in self.model_states().items():
            if state != "READY":
                reasons.setdefault(name, f"{state}: {reason}".strip(": "))
        named = "; ".join(f"{m}: {r}" for m, r in sorted(reasons.items())) or "none named in the log"
        if taken := _PORT_IN_USE.search(text):
            what += f" (port {taken.group(1)} is already in use)"
        errors = [line for line in text.splitlines() if _ERROR_LINE.match(line)][-10:]
        raise TritonStartError(
            f"{what}. Models that failed: {named}.\nErrors in {self.log_path}:\n"
            + ("\n".join(errors) or "(none)")
            + f"\nLog tail:\n{tail(self.log_path, 15)}"
        )

    # ---- shutdown

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after the grace period; returns when the group is empty."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            pgid = proc.pid  # start_new_session: the server leads its own group
            _signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver ignored SIGTERM for %.0f s; killing it", self.stop_grace_s)
                _signal_group(pgid, signal.SIGKILL)
                proc.wait()
            _wait_group_gone(pgid, timeout_s=min(5.0, self.stop_grace_s))
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc: a zombie waiting for a reaper is gone for us."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    """Stubs leave a moment after the server; any still there after `timeout_s` are killed."""
    deadline = time.monotonic() + timeout_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_members(pgid):
        _signal_group(pgid, signal.SIGKILL)
        end = time.monotonic() + 5.0
        while group_members(pgid) and time.monotonic() < end:
            time.sleep(0.05)
