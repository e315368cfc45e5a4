"""What a /v1/price question costs in model time: one TCN call with every candidate as a row, against one
forecast (a single row) and against asking the candidates one by one.

    python -m bench.price_cost [--candidates 21] [--series 8] [--seconds 2] [--threads 1] [--out FILE.md]
                               [--url http://127.0.0.1:8080 --requests 200]

ONNX Runtime over the exported TCN (model_repository/tcn/<latest>/model.onnx), the rows built by the
gateway's own input code (serving/price/features.py over artifacts/features/sales.npz): the candidates, the
two probes beyond the guard rails and the current price, as /v1/price sends them. With --url, also the
latency of sequential /v1/forecast and /v1/price requests (the bench pools' bodies) to a running gateway.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from bench.micro import ROOT, model_file, ort_session, timed
from serving.price.features import SALES_FILE, StoredSales, priced_series


def measure(artifacts: Path, repository: Path, candidates: int, n_series: int, seconds: float, threads: int) -> dict:
    path = model_file(repository, "tcn")
    if path is None:
        raise FileNotFoundError(f"no TCN under {repository}/tcn (run `make models`)")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    sales = StoredSales.load(artifacts / SALES_FILE, manifest["forecast"])
    session = ort_session(path, threads, "cpu")
    store_ids, item_ids = sales.stores.to_shop(sales.series_store), sales.items.to_shop(sales.series_item)
    one, batch, by_one, rows = [], [], [], 0
    for s in np.linspace(0, len(sales) - 1, n_series).astype(int):
        series = priced_series(sales, store_ids[s], item_ids[s])
        # /v1/price's default rows: +-20 % in equal log steps, a probe past each end, the current price.
        grid = series.current_price * np.geomspace(0.8, 1.2, candidates)
        step = grid[1] / grid[0]
        prices = np.concatenate([grid, [grid[0] / step, grid[-1] * step, series.current_price]])
        rows = len(prices)
        many = series.inputs_at(prices)
        single = series.inputs_at(prices[-1:])
        parts = [{k: v[i : i + 1] for k, v in many.items()} for i in range(rows)]
        session.run(None, many)  # first calls allocate
        one.append(np.median(timed(lambda f=single: session.run(None, f), seconds)))
        batch.append(np.median(timed(lambda f=many: session.run(None, f), seconds)))
        by_one.append(np.median(timed(lambda p=parts: [session.run(None, f) for f in p], seconds)))
    ms = {k: 1e3 * float(np.median(v)) for k, v in (("one", one), ("batch", batch), ("by_one", by_one))}
    model = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    return {"rows": rows, "series": n_series, "threads": threads, "model": model, "load": os.getloadavg()[0], **ms}


def http_latency(url: str, artifacts: Path, n: int) -> dict[str, dict[str, float]]:
    """p50 / p99 ms of n sequential requests per endpoint, each answer checked like the load test does."""
    import httpx

    from bench.checks import CHECKS
    from bench.payloads import ENDPOINTS, build_pool

    pool = build_pool(artifacts, n=n)
    out = {}
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for name in ("forecast", "price"):
            times = []
            for body in pool[name][:n]:
                t0 = time.perf_counter()
                r = client.post(ENDPOINTS[name], json=body)
                times.append(time.perf_counter() - t0)
                problem = CHECKS[name](r.content, body)[0] if r.status_code == 200 else f"HTTP {r.status_code}"
                if problem:
                    raise RuntimeError(f"{name}: {problem}: {r.text[:200]}")
            ms = 1e3 * np.asarray(times)
            out[name] = {"p50": float(np.median(ms)), "p99": float(np.quantile(ms, 0.99)), "n": len(ms)}
    return out


def markdown(r: dict, command: str) -> str:
    http = r.get("http") or {}
    lines = [f"| {ENDPOINT_LABEL[k]} | {v['n']} | {v['p50']:.2f} | {v['p99']:.2f} |" for k, v in http.items()]
    if lines:
        lines = ["", "Through the gateway (HTTP, sequential requests, answers checked):", "",
                 "| endpoint | requests | p50 ms | p99 ms |", "|---|---|---|---|", *lines]  # fmt: skip
    return "\n".join(
        [
            f"# What one /v1/price question costs ({platform.processor() or platform.machine()}, "
            f"{r['threads']} ORT thread, {time.strftime('%Y-%m-%d')})",
            "",
            f"`{command}`: ONNX Runtime over `{r['model']}`, medians over {r['series']} stored series; "
            f"load average {r['load']:.1f} while it ran (other jobs share these cores).",
            "",
            "| what | TCN rows | calls | model time, ms | vs one forecast |",
            "|---|---|---|---|---|",
            f"| one forecast (/v1/forecast) | 1 | 1 | {r['one']:.2f} | 1.0x |",
            f"| one price question, all rows in one call (/v1/price) | {r['rows']} | 1 | {r['batch']:.2f} | "
            f"{r['batch'] / r['one']:.1f}x |",
            f"| the same rows one call each | {r['rows']} | {r['rows']} | {r['by_one']:.2f} | "
            f"{r['by_one'] / r['one']:.1f}x |",
            *lines,
            "",
        ]
    )


ENDPOINT_LABEL = {"forecast": "/v1/forecast (with stock)", "price": "/v1/price (21 candidates)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.price_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    ap.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    ap.add_argument("--candidates", type=int, default=21)
    ap.add_argument("--series", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="markdown file (default: print only)")
    ap.add_argument("--url", default=None, help="a running gateway, to time /v1/forecast and /v1/price too")
    ap.add_argument("--requests", type=int, default=200)
    ns = ap.parse_args(argv)
    r = measure(ns.artifacts, ns.repository, ns.candidates, ns.series, ns.seconds, ns.threads)
    command = f"python -m bench.price_cost --candidates {ns.candidates} --series {ns.series} --threads {ns.threads}"
    if ns.url:
        r["http"] = http_latency(ns.url, ns.artifacts, ns.requests)
        command += f" --url {ns.url} --requests {ns.requests}"
    text = markdown(r, command)
    print(text)
    if ns.out is not None:
        ns.out.parent.mkdir(parents=True, exist_ok=True)
        ns.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
