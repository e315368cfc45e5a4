"""`python -m serving`: the gateway under uvicorn, configured by SERVING_* variables (serving/runtime/settings.py).

SIGTERM/SIGINT: graceful shutdown; HTTP and gRPC drain side by side, each letting the requests it accepted
finish within SERVING_DRAIN_TIMEOUT_S (serving/app.py). SIGHUP: reload models and artifacts without dropping
requests. HTTP request headers must arrive within SERVING_HEADER_TIMEOUT_S (serving/http/server.py).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from serving.app import begin_drain, create_app
from serving.http.server import GatewayServer, header_timeout_protocol
from serving.runtime.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.host, help=f"default {settings.host} (SERVING_HOST)")
    parser.add_argument("--port", type=int, default=settings.port, help=f"default {settings.port} (SERVING_PORT)")
    args = parser.parse_args(argv)
    settings = settings.model_copy(update={"host": args.host, "port": args.port})
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=header_timeout_protocol(settings.header_timeout_s),
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.drain_timeout_s,  # type: ignore[arg-type]  (a float works)
        access_log=False,  # per-route counts and latencies are in /metrics
    )
    server = GatewayServer(config, on_exit=functools.partial(begin_drain, app))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises SIGINT once it has shut down
        server.run()
    if not server.started:  # start-up failed (bad manifest, port in use): uvicorn.run's exit status
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
