"""`python -m serving`: the gateway under uvicorn, configured by SERVING_* variables (serving/runtime/settings.py).

SIGTERM/SIGINT: graceful shutdown (open requests finish within SERVING_DRAIN_TIMEOUT_S).
SIGHUP: reload models and artifacts without dropping requests.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from serving.app import create_app
from serving.runtime.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=settings.host, help=f"default {settings.host} (SERVING_HOST)")
    parser.add_argument("--port", type=int, default=settings.port, help=f"default {settings.port} (SERVING_PORT)")
    args = parser.parse_args(argv)
    settings = settings.model_copy(update={"host": args.host, "port": args.port})
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.drain_timeout_s,  # type: ignore[arg-type]  (a float works)
        access_log=False,  # per-route counts and latencies are in /metrics
    )


if __name__ == "__main__":
    main()
