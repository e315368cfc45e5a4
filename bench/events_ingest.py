"""Events ingest rate of one gateway process: POST /v1/events in batches of 100, memory store and Redis store.

    python -m bench.events_ingest [--seconds 10] [--batch 100] [--concurrency 8] [--items 100000]
                                  [--server-cores 0] [--load-cores 1] [--out bench/results/events-<machine>-<date>.md]

The gateway (`python -m serving`, pinned to --server-cores, one core by default, so the rate is per core) runs
over a synthetic catalogue (features/items.npz of --items ids; no models are needed for events) and writes its
durable event log to a temporary folder. The load generator (asyncio + httpx, pre-encoded bodies, every
answer checked) and the redis-server (the online store's own launcher) run on --load-cores. Event mix: 65 %
view, 18 % click, 6 % cart, 3 % buy, 8 % skip over 100k users; 5 % of the items are not in the catalogue.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench import servers
from bench.__main__ import cpu_model, machine_slug

ROOT = servers.ROOT
KINDS = np.array(["view", "click", "cart", "buy", "skip"])
MIX = np.array([0.65, 0.18, 0.06, 0.03, 0.08])
GOAL = 20_000  # events/s per core


def catalogue(folder: Path, n_items: int) -> Path:
    (folder / "features").mkdir(parents=True, exist_ok=True)
    ids = np.arange(100_000_000, 100_000_000 + n_items, dtype=np.int64)
    np.savez(folder / "features" / "items.npz", item_ids=ids, category=np.arange(n_items) % 50)
    return folder


def bodies(n: int, batch: int, n_items: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        users = rng.integers(10_000_000, 10_100_000, batch)
        items = 100_000_000 + rng.integers(0, int(n_items / 0.95), batch)  # ~5 % beyond the catalogue
        kinds = KINDS[rng.choice(len(KINDS), batch, p=MIX)]
        rows = zip(users, items, kinds, strict=True)
        events = [{"user_id": int(u), "item_id": int(i), "event_type": str(k)} for u, i, k in rows]
        out.append(json.dumps({"events": events}).encode())
    return out


async def drive(base: str, pool: list[bytes], batch: int, seconds: float, concurrency: int) -> dict:
    """Closed loop: `concurrency` clients post batches back to back for `seconds`; -> rate and latency."""
    latencies: list[float] = []
    errors = 0
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:

        async def one(i: int) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            r = await client.post("/v1/events", content=pool[i % len(pool)], headers=headers)
            if r.status_code != 200 or r.json()["accepted"] != batch:
                errors += 1
            latencies.append(time.perf_counter() - t0)

        for i in range(concurrency * 20):  # warm-up: connections, first allocations
            await one(i)
        latencies.clear()
        stop = time.perf_counter() + seconds
        counter = iter(range(10**9))

        async def worker() -> None:
            while time.perf_counter() < stop:
                await one(next(counter))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3
    return {
        "batches": len(latencies),
        "events_per_s": len(latencies) * batch / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": errors,
    }


def wait_for_events(base: str, limit: float = 60) -> None:
    """No models here, so /readyz stays 503: ready for this bench = the catalogue answers."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            caps = httpx.get(f"{base}/v1/models", timeout=2).json()["capabilities"]
            if caps["events"]["components"]["catalogue"] == "ok":
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base}: the events catalogue did not load")


def start_redis(port: int, cores: str) -> subprocess.Popen:
    cmd = servers.pinned([sys.executable, "-m", "serving.runtime.online_store.server", "--port", str(port)], cores)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if "ready" not in proc.stdout.readline():  # the launcher prints its line once PING answers
        proc.kill()
        raise RuntimeError("redis-server did not start")
    return proc


def run_one(store: str, ns: argparse.Namespace, root: Path, work: Path, pool: list[bytes]) -> dict:
    """One gateway over root's catalogue, its log and its own log file under work."""
    port = servers.free_port()
    env = {"SERVING_ONLINE_STORE": store, "SERVING_GRPC_ENABLED": "false", "SERVING_EVENT_LOG": str(work / "log")}
    env["SERVING_ONLINE_TIMEOUT_MS"] = "1000"
    gw = servers.gateway(
        port, work / "gateway.log", artifacts=root / "artifacts", repository=root / "repo", cores=ns.server_cores,
        extra_env=env,
    )  # fmt: skip
    gw = dataclasses.replace(gw, ready_url=f"http://127.0.0.1:{port}/healthz")
    with gw:
        base = f"http://127.0.0.1:{port}"
        wait_for_events(base)
        result = asyncio.run(drive(base, pool, ns.batch, ns.seconds, ns.concurrency))
    lines = sum(len(f.read_text().splitlines()) for f in (work / "log").glob("events-*.jsonl"))
    result["log_lines"] = lines
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.events_ingest", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--server-cores", default="0")
    p.add_argument("--load-cores", default="1")
    p.add_argument("--out", type=Path, default=None)
    ns = p.parse_args(argv)
    if servers.n_cores(ns.server_cores) != 1:
        print("note: the gateway has more than one core; the per-core figure divides by them", file=sys.stderr)
    pool = bodies(256, ns.batch, ns.items)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="events-bench-") as tmp_name:
        tmp = Path(tmp_name)
        catalogue(tmp / "artifacts", ns.items)
        (tmp / "repo").mkdir()
        for name in ("memory", "redis"):
            (tmp / name).mkdir()
        results["memory"] = run_one("memory", ns, tmp, tmp / "memory", pool)
        redis_port = servers.free_port()
        redis = start_redis(redis_port, ns.load_cores)
        try:
            results["redis"] = run_one(f"redis://127.0.0.1:{redis_port}/0", ns, tmp, tmp / "redis", pool)
        finally:
            redis.terminate()
            redis.wait(timeout=15)
    cores = servers.n_cores(ns.server_cores)
    date = dt.date.today().isoformat()
    rows = []
    for name, r in results.items():
        rate = r["events_per_s"] / cores
        rows.append(
            f"| {name} | {rate:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
            f"{r['log_lines']:,} of {r['batches'] * ns.batch:,} + warm-up | {'yes' if rate >= GOAL else 'no'} |"
        )
    text = "\n".join(
        [
            f"# Events ingest, {date}",
            "",
            f"`{' '.join(['python -m bench.events_ingest', *(argv if argv is not None else sys.argv[1:])])}` on "
            f"{cpu_model()} ({os.cpu_count()} CPUs): "
            f"gateway on core(s) {ns.server_cores}, load generator and redis-server on core(s) {ns.load_cores}; "
            f"batches of {ns.batch}, {ns.concurrency} concurrent clients, {ns.seconds:g} s per store.",
            "",
            f"| online store | events/s per core | p50 ms / batch | p99 ms / batch | errors | in the log after shutdown | >= {GOAL:,}/s |",  # noqa: E501
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "p50/p99: client-side latency of one batch in the closed loop (the clients' own queueing included).",
            "'in the log': lines in the durable event log after the gateway's SIGTERM shutdown.",
            "",
        ]
    )
    out = ns.out or ROOT / "bench" / "results" / f"events-{machine_slug()}-{date}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
