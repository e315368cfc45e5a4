"""Triton alone: the models' own latency and throughput, without the gateway, at fixed concurrency levels.

    python -m bench.triton_direct --url 127.0.0.1:8001 --artifacts artifacts --models din,intent_bert \
        --concurrency 1,4,16 --seconds 5 --out results.csv

Requests have the gateway's shapes (bench/inputs.py): DIN 200 candidate rows x a typical stored history,
the user tower one row, BERT one typical message. With NVIDIA's `perf_analyzer` binary on PATH it does
the measuring; without it (the PyPI package `perf-analyzer` 0.1.0 is a placeholder with no binary, and the
binary ships only in Triton's SDK image), a small asyncio gRPC client does the same thing: `concurrency`
requests always in flight on one channel, requests that started in the warm-up not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.inputs import FeatureStore, IntentTexts, din_request, served_lengths, user_tower_request

FIELDS = ("tool", "model", "concurrency", "rows", "requests", "rps", "rows_per_s", "p50_ms", "p95_ms", "p99_ms")
TRITON_DTYPES = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP16": np.float16, "BOOL": np.bool_}


@dataclass
class DirectRow:
    tool: str  # "perf_analyzer" or "tritonclient"
    model: str
    concurrency: int
    rows: int  # rows per request (DIN candidates, texts)
    requests: int
    rps: float
    rows_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def request_inputs(
    model: str, artifacts: Path, metadata: dict, rows: int, repository: Path | None = None
) -> dict[str, np.ndarray]:
    """The gateway-shaped request for `model`, its arrays shaped to the server's metadata."""
    shapes = {i["name"]: i["shape"] for i in metadata["inputs"]}
    n_features = int(shapes["user_features"][-1]) if "user_features" in shapes else 0
    max_hist = served_lengths(repository, model).get("hist_item_ids") if repository else None
    if model.startswith("din"):
        arrays = din_request(FeatureStore.load(artifacts), rows, n_features, max_hist)
    elif model.startswith("user_tower"):
        arrays = user_tower_request(FeatureStore.load(artifacts), n_features, max_hist)
    elif model.startswith("intent"):
        arrays = IntentTexts(artifacts).typical(rows)
    else:
        raise ValueError(f"no request shape known for model {model!r}")
    out = {}
    for name, shape in shapes.items():
        a = arrays[name]
        # A [batch] tensor declared as dims [1] travels as [batch, 1] (serving/contracts/triton_config.py,
        # serving/runtime/backends/triton.py).
        out[name] = a.reshape(*a.shape, 1) if a.ndim == len(shape) - 1 else a
    return out


def _stats(latencies_s: list[float], window_s: float) -> tuple[int, float, float, float, float]:
    lat = np.asarray(latencies_s) * 1e3
    if lat.size == 0:
        return 0, 0.0, math.nan, math.nan, math.nan
    return int(lat.size), lat.size / window_s, *(float(np.percentile(lat, q)) for q in (50, 95, 99))


async def _measure_grpc(
    url: str,
    model: str,
    arrays: dict[str, np.ndarray],
    outputs: list[str],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> tuple[list[float], float]:
    import tritonclient.grpc.aio as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    client = grpcclient.InferenceServerClient(url)
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + seconds
    latencies: list[float] = []

    async def worker() -> None:
        inputs = []
        for name, a in arrays.items():
            x = grpcclient.InferInput(name, list(a.shape), np_to_triton_dtype(a.dtype))
            x.set_data_from_numpy(np.ascontiguousarray(a))
            inputs.append(x)
        outs = [grpcclient.InferRequestedOutput(o) for o in outputs]
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            await client.infer(model, inputs, outputs=outs)
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= end:
                latencies.append(t1 - t0)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    return latencies, seconds


def measure_tritonclient(
    url: str,
    model: str,
    arrays: dict[str, np.ndarray],
    outputs: list[str],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> DirectRow:
    lat, window = asyncio.run(_measure_grpc(url, model, arrays, outputs, concurrency, seconds, warmup))
    n, rps, p50, p95, p99 = _stats(lat, window)
    rows = int(next(iter(arrays.values())).shape[0])
    return DirectRow("tritonclient", model, concurrency, rows, n, rps, rps * rows, p50, p95, p99)


# ---- perf_analyzer, where its binary exists


def perf_analyzer_input_file(arrays: dict[str, np.ndarray], path: Path) -> Path:
    """perf_analyzer's --input-data JSON: one sample, each tensor's first row with its shape (batch left out)."""
    sample = {n: {"content": a[0].reshape(-1).tolist(), "shape": list(a.shape[1:])} for n, a in arrays.items()}
    path.write_text(json.dumps({"data": [sample]}))
    return path


def parse_perf_analyzer_csv(path: Path, model: str, rows: int) -> list[DirectRow]:
    """perf_analyzer -f output: latencies in microseconds; 'Inferences/Second' counts batch rows."""
    out = []
    with Path(path).open(newline="") as f:
        for d in csv.DictReader(f):
            inf_s = float(d["Inferences/Second"])
            rps = inf_s / max(rows, 1)
            p50, p95, p99 = (float(d[f"p{q} latency"]) / 1e3 for q in (50, 95, 99))
            out.append(DirectRow("perf_analyzer", model, int(d["Concurrency"]), rows, 0, rps, inf_s, p50, p95, p99))
    return out


def measure_perf_analyzer(
    binary: str, url: str, model: str, arrays: dict[str, np.ndarray], concurrency: int, seconds: float, work: Path
) -> DirectRow:
    rows = int(next(iter(arrays.values())).shape[0])
    data = perf_analyzer_input_file(arrays, work / f"{model}_input.json")
    out = work / f"{model}_c{concurrency}_pa.csv"
    cmd = [binary, "-m", model, "-u", url, "-i", "grpc", "-b", str(rows), "--input-data", str(data)]
    cmd += ["--concurrency-range", f"{concurrency}:{concurrency}", "--measurement-interval", str(int(seconds * 1e3))]
    cmd += ["--percentile", "99", "-f", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds * 10 + 60)
    return parse_perf_analyzer_csv(out, model, rows)[0]


def write_rows(rows: list[DirectRow], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(r).items()})
    return path


def read_rows(path: Path) -> list[DirectRow]:
    with Path(path).open(newline="") as f:
        return [
            DirectRow(
                d["tool"],
                d["model"],
                int(d["concurrency"]),
                int(d["rows"]),
                int(d["requests"]),
                *(float(d[k]) for k in ("rps", "rows_per_s", "p50_ms", "p95_ms", "p99_ms")),
            )
            for d in csv.DictReader(f)
        ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.triton_direct", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="Triton gRPC host:port")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--repository", type=Path, default=Path("model_repository"), help="for the served history length")
    p.add_argument("--models", default="din,intent_bert")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--din-rows", type=int, default=200, help="DIN rows per request (the gateway's candidates)")
    p.add_argument("--tool", choices=["auto", "perf_analyzer", "tritonclient"], default="auto")
    p.add_argument("--out", type=Path, required=True)
    ns = p.parse_args(argv)

    import tritonclient.grpc as grpcclient

    binary = shutil.which("perf_analyzer") if ns.tool != "tritonclient" else None
    if ns.tool == "perf_analyzer" and binary is None:
        raise SystemExit("perf_analyzer is not on PATH (the PyPI package perf-analyzer is a placeholder)")
    meta_client = grpcclient.InferenceServerClient(ns.url)
    rows: list[DirectRow] = []
    for model in filter(None, ns.models.split(",")):
        metadata = meta_client.get_model_metadata(model, as_json=True)
        per_request = ns.din_rows if model.startswith("din") else 1
        arrays = request_inputs(model, ns.artifacts, metadata, per_request, ns.repository)
        outputs = [o["name"] for o in metadata["outputs"]]
        for c in (int(x) for x in ns.concurrency.split(",")):
            if binary:
                row = measure_perf_analyzer(binary, ns.url, model, arrays, c, ns.seconds, ns.out.parent)
            else:
                row = measure_tritonclient(ns.url, model, arrays, outputs, c, ns.seconds, ns.warmup)
            rows.append(row)
            print(f"{row.tool} {model} x{c}: {row.rps:.1f} req/s, p50 {row.p50_ms:.2f} ms, p99 {row.p99_ms:.2f} ms")
    write_rows(rows, ns.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
