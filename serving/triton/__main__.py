"""`python -m serving.triton` (`make triton`): a local tritonserver over a view of model_repository/.

    python -m serving.triton [--repository model_repository] [--build-dir .triton]
                             [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002] [--host 127.0.0.1]

Ports default to Triton's usual ones (the gateway's SERVING_TRITON_URL default is localhost:8001); 0 picks a
free port. Runs until Ctrl-C or SIGTERM, then stops the server and its Python stubs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from serving.triton.dist import TritonNotFound
from serving.triton.launcher import Ports, TritonServer, TritonStartError
from serving.triton.view import ViewError, build_view


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m serving.triton", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repository", type=Path, default=Path("model_repository"), help="production model repository")
    p.add_argument("--build-dir", type=Path, default=Path(".triton"), help="view, backend folder and log go here")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to serve other machines)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--instances", type=int, default=None, help="instances per ONNX model (default: the config's)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    p.add_argument("--log-verbose", type=int, default=0, help="Triton's --log-verbose level")
    p.add_argument("--view-only", action="store_true", help="build the view and exit")
    return p.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.view_only:
            view = build_view(args.repository, args.build_dir / "repository", instance_count=args.instances)
            print(f"view of {view.source} in {view.path}: {view.models}")
            return 0
        server = TritonServer(
            args.repository,
            build_dir=args.build_dir,
            host=args.host,
            ports=Ports(http=args.http_port, grpc=args.grpc_port, metrics=args.metrics_port),
            instance_count=args.instances,
            ready_timeout_s=args.timeout,
            log_verbose=args.log_verbose,
        )
        # SIGTERM (docker stop, kill) takes the same clean path as Ctrl-C; SIGINT is set too because a shell
        # starts background jobs with it ignored, and Python then never turns it into KeyboardInterrupt.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        with server:
            print(f"tritonserver ready in {server.startup_s:.1f} s, models: {', '.join(server.models)}")
            print(f"  grpc    {server.grpc_url}   (SERVING_TRITON_URL={server.grpc_url})")
            print(f"  http    {server.http_url}")
            print(f"  metrics {server.metrics_url}")
            print(f"  log     {server.log_path}")
            for name, reason in (server.view.skipped if server.view else {}).items():
                print(f"  skipped {name}: {reason}")
            print("Ctrl-C to stop.", flush=True)
            while server.running:
                time.sleep(0.5)
            print(f"tritonserver exited by itself; see {server.log_path}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopped")
        return 0
    except (TritonNotFound, TritonStartError, ViewError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
