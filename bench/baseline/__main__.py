"""`python -m bench.baseline --port 8090 --artifacts artifacts [--device cpu|cuda] [--threads 1]`: the naive peer."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (= the cores it is pinned to)")
    args = p.parse_args(argv)

    import torch
    import uvicorn

    torch.set_num_threads(args.threads)
    from bench.baseline.app import create_app

    app = create_app(args.artifacts, args.device)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
