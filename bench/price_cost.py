"""What a /v1/price question costs in model time: one call of the plans model (the past once, a plan per
price), against one TCN call with every candidate as a row, one forecast (a single row), and the rows one
call each.

    python -m bench.price_cost [--candidates 21] [--series 8] [--seconds 2] [--threads 1] [--out FILE.md]
                               [--artifacts DIR --repository DIR] [--url URL [URL ...] --requests 200]

ONNX Runtime over the exported models (model_repository/tcn and tcn_plans, latest versions), the inputs
built by the gateway's own code (serving/price/features.py over artifacts/features/sales.npz): the
candidates, the two probes beyond the guard rails and the current price, as /v1/price sends them, as rows
of the TCN or as plans of one row. The plans' answers are checked against the rows' (max relative
difference reported). With --url, also the latency of sequential /v1/forecast and /v1/price requests (the
bench pools' bodies) to each running gateway, labelled with the model that answered /v1/price.
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
from serving.contracts.model_specs import TCN_PLANS
from serving.price.features import SALES_FILE, StoredSales, priced_series


def _median_s(fn, seconds: float) -> float:
    return float(np.median(timed(fn, seconds)))


def measure(artifacts: Path, repository: Path, candidates: int, n_series: int, seconds: float, threads: int) -> dict:
    path, plans_path = model_file(repository, "tcn"), model_file(repository, TCN_PLANS.name)
    if path is None:
        raise FileNotFoundError(f"no TCN under {repository}/tcn (run `make models`)")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    sales = StoredSales.load(artifacts / SALES_FILE, manifest["forecast"])
    session = ort_session(path, threads, "cpu")
    plans_session = ort_session(plans_path, threads, "cpu") if plans_path is not None else None
    store_ids, item_ids = sales.stores.to_shop(sales.series_store), sales.items.to_shop(sales.series_item)
    t: dict[str, list[float]] = {k: [] for k in ("one", "batch", "by_one", "plans", "rows_inputs", "plans_inputs")}
    worst, rows = 0.0, 0
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
        by_rows = session.run(None, many)  # first calls allocate
        t["one"].append(_median_s(lambda f=single: session.run(None, f), seconds))
        t["batch"].append(_median_s(lambda f=many: session.run(None, f), seconds))
        t["by_one"].append(_median_s(lambda p=parts: [session.run(None, f) for f in p], seconds))
        t["rows_inputs"].append(_median_s(lambda p=prices, x=series: x.inputs_at(p), seconds / 4))
        if plans_session is None:
            continue
        plans = series.plans_at(prices)
        by_plans = plans_session.run(None, plans)
        for r, p in zip(by_rows, by_plans, strict=True):  # the same answers, or the timing means nothing
            worst = max(worst, float(np.max(np.abs(p[0] - r) / np.maximum(np.abs(r), 1e-3))))
        t["plans"].append(_median_s(lambda f=plans: plans_session.run(None, f), seconds))
        t["plans_inputs"].append(_median_s(lambda p=prices, x=series: x.plans_at(p), seconds / 4))
    ms = {k: 1e3 * float(np.median(v)) for k, v in t.items() if v}

    def shown(p: Path | None) -> str | None:
        return None if p is None else str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)

    return {
        "rows": rows,
        "series": n_series,
        "threads": threads,
        "model": shown(path),
        "plans_model": shown(plans_path),
        "plans_max_rel_diff": worst if plans_session is not None else None,
        "load": os.getloadavg()[0],
        **ms,
    }


def http_latency(url: str, artifacts: Path, n: int) -> dict[str, dict]:
    """p50 / p99 ms of n sequential requests per endpoint, each answer checked like the load test does, with
    the model(s) that answered (model_versions) and the median of each stage the answers time (timings_ms)."""
    import httpx

    from bench.checks import CHECKS
    from bench.payloads import ENDPOINTS, build_pool

    pool = build_pool(artifacts, n=n)
    out = {}
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for name in ("forecast", "price"):
            times, models, stages = [], set(), {}
            for body in pool[name][:n]:
                t0 = time.perf_counter()
                r = client.post(ENDPOINTS[name], json=body)
                times.append(time.perf_counter() - t0)
                problem = CHECKS[name](r.content, body)[0] if r.status_code == 200 else f"HTTP {r.status_code}"
                if problem:
                    raise RuntimeError(f"{name}: {problem}: {r.text[:200]}")
                answer = r.json()
                models |= {f"{k} v{v}" for k, v in answer["model_versions"].items()}
                for stage, took in answer["timings_ms"].items():
                    stages.setdefault(stage, []).append(took)
            ms = 1e3 * np.asarray(times)
            out[name] = {"p50": float(np.median(ms)), "p99": float(np.quantile(ms, 0.99)), "n": len(ms)}
            out[name]["models"] = ", ".join(sorted(models))
            out[name]["stages"] = " / ".join(f"{k} {np.median(v):.2f}" for k, v in stages.items())
    return out


def markdown(r: dict, command: str) -> str:
    rows, one = r["rows"], r["one"]
    table = [
        "| what | model | rows x plans | calls | model time, ms | vs one forecast | inputs, ms |",
        "|---|---|---|---|---|---|---|",
        f"| one forecast (/v1/forecast) | tcn | 1 | 1 | {one:.2f} | 1.0x | |",
    ]
    if "plans" in r:
        table.append(
            f"| one price question, one row of {rows} plans (/v1/price, tcn_plans served) | tcn_plans | 1 x {rows} "
            f"| 1 | {r['plans']:.2f} | {r['plans'] / one:.1f}x | {r['plans_inputs']:.2f} |"
        )
    table += [
        f"| one price question, all rows in one call (/v1/price, no tcn_plans) | tcn | {rows} | 1 | "
        f"{r['batch']:.2f} | {r['batch'] / one:.1f}x | {r['rows_inputs']:.2f} |",
        f"| the same rows one call each | tcn | {rows} | {rows} | {r['by_one']:.2f} | {r['by_one'] / one:.1f}x | |",
    ]
    models = f"`{r['model']}`" + (f" and `{r['plans_model']}`" if r.get("plans_model") else "")
    check = (
        f" The plans' answers equal the rows' within a relative {r['plans_max_rel_diff']:.1e} (max over every output)."
        if r.get("plans_max_rel_diff") is not None
        else " No tcn_plans in the repository: the plans path is not measured."
    )
    lines = [
        f"# What one /v1/price question costs ({platform.processor() or platform.machine()}, "
        f"{r['threads']} ORT thread, {time.strftime('%Y-%m-%d')})",
        "",
        f"`{command}`: ONNX Runtime over {models}, medians over {r['series']} stored series; load average "
        f"{r['load']:.1f} while it ran (other jobs share these cores). `inputs` is the gateway's input building "
        f"for the question (serving/price/features.py: `plans_at` or `inputs_at`).{check}",
        "",
        *table,
    ]
    gateways = r.get("http") or []
    if gateways:
        lines += [
            "",
            "Through the gateway (HTTP, sequential requests, answers checked; one gateway per row pair):",
            "",
            "| endpoint | answered by | requests | p50 ms | p99 ms | median ms per stage (the answers' timings_ms) |",
            "|---|---|---|---|---|---|",
        ]
        for http in gateways:
            lines += [
                f"| {ENDPOINT_LABEL[k]} | {v['models']} | {v['n']} | {v['p50']:.2f} | {v['p99']:.2f} | {v['stages']} |"
                for k, v in http.items()
            ]
    return "\n".join([*lines, ""])


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
    ap.add_argument("--url", nargs="+", default=[], help="running gateways, to time /v1/forecast and /v1/price too")
    ap.add_argument("--requests", type=int, default=200)
    ns = ap.parse_args(argv)
    r = measure(ns.artifacts, ns.repository, ns.candidates, ns.series, ns.seconds, ns.threads)
    command = f"python -m bench.price_cost --candidates {ns.candidates} --series {ns.series} --threads {ns.threads}"
    for dest in ("artifacts", "repository"):  # named where they are not the working tree's own
        if getattr(ns, dest) != ap.get_default(dest):
            command += f" --{dest} {getattr(ns, dest)}"
    if ns.url:
        r["http"] = [http_latency(url, ns.artifacts, ns.requests) for url in ns.url]
        command += f" --url {' '.join(ns.url)} --requests {ns.requests}"
    text = markdown(r, command)
    print(text)
    if ns.out is not None:
        ns.out.parent.mkdir(parents=True, exist_ok=True)
        ns.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
