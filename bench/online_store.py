"""/v1/recommend throughput of one gateway process with the Redis online store vs the in-process one.

    python -m bench.online_store [--seconds 16] [--rounds 4] [--warmup 1] [--concurrency 8] [--users 500]
                                 [--events-per-user 6] [--artifacts artifacts] [--repository model_repository]
                                 [--min-ratio 0.9]
                                 [--server-cores 0] [--load-cores 1] [--out FILE.md]

(--out default: bench/results/online_store-<machine>-<date>.md.)

Two gateways (`python -m serving` on the built models, both pinned to --server-cores), one with
SERVING_ONLINE_STORE=memory and one on a real redis-server (the online store's own launcher), take the
same request bodies in turns: --rounds rounds each, in the order A B B A ..., one loaded while the other
idles, so that a drift or a neighbour's burst of CPU falls on both alike (the report gives the CPU that
other processes took, and the ratio of every round). Before the load, every bench user gets
--events-per-user events through /v1/events (views, clicks, a cart, a skip), so every recommendation
reads a non-empty online state: most users are known to the export (stored history + online events), a
fifth are new shoppers (online events only). The load is closed loop: --concurrency clients send
POST /v1/recommend {user_id, k: 10, candidates: 200} back to back, --seconds per store over all its
rounds, each round after a --warmup that is not counted. This process (asyncio + httpx) and the
redis-server run on --load-cores. Every answer is checked: 200, k items sorted by score, not a fallback
(the online events were read: a new shopper has nothing else) and not degraded (a failed store read
degrades it); anything else is an error, not throughput. Exit 1 when Redis reaches less than --min-ratio
of the in-process throughput or more than 0.1 % of the answers fail (the load tests' convention).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import servers
from bench.__main__ import cpu_model, machine_slug
from bench.checks import check_recommend
from bench.events_ingest import start_redis

ROOT = servers.ROOT
MIN_RATIO = 0.9  # Redis throughput / in-process throughput
MAX_ERROR_RATE = 0.001
VISIT = ("view", "click", "view", "click", "cart", "skip")  # one user's online events, repeated to length
EVENTS_BATCH = 1000  # the API's limit per POST
STORES = ("memory", "redis")


def shop_ids(values: np.ndarray) -> list[int | str]:
    return [int(v) if np.issubdtype(values.dtype, np.integer) else str(v) for v in values]


def bench_users(artifacts: Path, n: int, events_per_user: int, seed: int = 0) -> tuple[list[Any], list[dict], int]:
    """(user ids, their events, how many are known): 4 in 5 known to the export (with a stored history), 1 in 5
    new shoppers; the users in a shuffled order, each one's events in the order of `VISIT`."""
    rng = np.random.default_rng(seed)
    with np.load(artifacts / "features" / "items.npz", allow_pickle=False) as z:
        items = z["item_ids"]
    with np.load(artifacts / "features" / "users.npz", allow_pickle=False) as z:
        user_ids, offsets = z["user_ids"], z["hist_offsets"]
    known = np.flatnonzero(np.diff(offsets) > 0)
    n_known = min(known.size, n - n // 5)
    users = shop_ids(user_ids[rng.choice(known, n_known, replace=False)])
    # New shoppers: ids of the export's kind that it does not hold.
    if np.issubdtype(user_ids.dtype, np.integer):
        top = int(user_ids.max()) + 1_000_000
        users += list(range(top, top + n - n_known))
    else:
        users += [f"bench-new-{i}" for i in range(n - n_known)]
    order = rng.permutation(len(users))
    users = [users[i] for i in order]
    events = []
    for user in users:
        picks = shop_ids(items[rng.choice(items.size, events_per_user, replace=False)])
        for j, item in enumerate(picks):
            events.append({"user_id": user, "item_id": item, "event_type": VISIT[j % len(VISIT)]})
    return users, events, n_known


def post_events(base: str, events: list[dict]) -> int:
    accepted = 0
    with httpx.Client(base_url=base, timeout=30) as client:
        for s in range(0, len(events), EVENTS_BATCH):
            r = client.post("/v1/events", json={"events": events[s : s + EVENTS_BATCH]})
            r.raise_for_status()
            accepted += r.json()["accepted"]
    return accepted


def proc_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) of a process so far; NaN where /proc cannot say (pid None: this one)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def machine_busy_s() -> float:
    """CPU seconds all cores have been busy since boot (/proc/stat: all but idle and iowait); NaN elsewhere."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (the redis-server under its launcher); [] where /proc cannot say."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def check(body: bytes, req: dict) -> tuple[str | None, dict[str, float]]:
    problem, timings = check_recommend(body, req)
    if problem is None:
        answer = json.loads(body)
        if answer["fallback"]:
            problem = f"fallback ({answer['fallback_reason']}): the online events were not read"
        elif answer["degraded"]:
            problem = f"degraded: {answer['degraded_reason']}"
        elif len(answer["items"]) != req["k"]:
            problem = f"{len(answer['items'])} items for k={req['k']}"
    return problem, timings


@dataclass
class Window:
    """One measured stretch of the closed loop against one gateway: raw figures, merged over the rounds."""

    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    features_ms: list[float] = field(default_factory=list)
    problems: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # per watched process, and 'other processes'

    @property
    def errors(self) -> int:
        return sum(self.problems.values())

    @property
    def ok_per_s(self) -> float:
        return (len(self.latencies_s) - self.errors) / self.elapsed_s if self.elapsed_s else 0.0

    def add(self, other: Window) -> None:
        self.elapsed_s += other.elapsed_s
        self.latencies_s += other.latencies_s
        self.features_ms += other.features_ms
        for what, n in other.problems.items():
            self.problems[what] = self.problems.get(what, 0) + n
        for name, sec in other.cpu_s.items():
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + sec

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies_s or [np.nan]) * 1e3
        return {
            "requests": len(self.latencies_s),
            "ok_per_s": self.ok_per_s,
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "features_p50_ms": float(np.nanmedian(self.features_ms)) if self.features_ms else float("nan"),
            "errors": self.errors,
            "problems": dict(self.problems),
            "cpu": {name: sec / self.elapsed_s for name, sec in self.cpu_s.items()} if self.elapsed_s else {},
        }


async def drive(
    base: str,
    pool: list[bytes],
    reqs: list[dict],
    seconds: float,
    warmup: float,
    concurrency: int,
    watch: dict[str, int | None],
) -> Window:
    """Closed loop: `concurrency` clients post /v1/recommend back to back for `seconds` after `warmup`; -> the
    latencies, errors and CPU seconds of each process in `watch` ({name: pid, None = this one}) and of all other
    processes over the measured window."""
    out = Window()
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    counter = iter(range(10**12))
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one(record: bool) -> None:
            i = next(counter) % len(pool)
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/recommend", content=pool[i], headers=headers)
                elapsed = time.perf_counter() - t0
                problem, timings = check(r.content, reqs[i]) if r.status_code == 200 else (f"HTTP {r.status_code}", {})
            except (httpx.HTTPError, ValueError) as exc:
                elapsed, problem, timings = time.perf_counter() - t0, type(exc).__name__, {}
            if not record:
                return
            out.latencies_s.append(elapsed)
            if problem is None:
                out.features_ms.append(timings.get("features", float("nan")))
            else:
                out.problems[problem] = out.problems.get(problem, 0) + 1

        async def worker(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                await one(record)

        await asyncio.gather(*(worker(time.perf_counter() + warmup, False) for _ in range(concurrency)))
        cpu0 = {name: proc_cpu_s(pid) for name, pid in watch.items()}
        busy0 = machine_busy_s()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(t0 + seconds, True) for _ in range(concurrency)))
        out.elapsed_s = time.perf_counter() - t0
        out.cpu_s = {name: proc_cpu_s(pid) - cpu0[name] for name, pid in watch.items()}
        # What else ran meanwhile: a busy neighbour makes the two stores' figures incomparable.
        out.cpu_s["other processes"] = max(machine_busy_s() - busy0 - sum(out.cpu_s.values()), 0.0)
    return out


@dataclass
class Target:
    """A started gateway under test and the processes whose CPU its windows record."""

    base: str
    watch: dict[str, int | None]


def start_gateway(
    stack: contextlib.ExitStack,
    store: str,
    ns: argparse.Namespace,
    work: Path,
    events: list[dict],
    redis_pid: int | None = None,
) -> Target:
    """A gateway with `store` (stopped when `stack` closes) that has taken the users' events."""
    port = servers.free_port()
    env = {"SERVING_ONLINE_STORE": store, "SERVING_GRPC_ENABLED": "false", "SERVING_EVENT_LOG": str(work / "log")}
    cores = None if ns.server_cores == "none" else ns.server_cores
    gw = stack.enter_context(
        servers.gateway(
            port, work / "gateway.log", artifacts=ns.artifacts, repository=ns.repository, cores=cores, extra_env=env
        )
    )
    base = f"http://127.0.0.1:{port}"
    accepted = post_events(base, events)
    if accepted != len(events):
        raise RuntimeError(f"{store}: {accepted} of {len(events)} events accepted")
    assert gw.proc is not None
    watch = {"gateway": gw.proc.pid, "load generator": None, **({"redis-server": redis_pid} if redis_pid else {})}
    return Target(base, watch)


def verdict(results: dict[str, dict], min_ratio: float) -> tuple[float, bool]:
    """(Redis / in-process throughput, whether the objective is met: the ratio and the error rate)."""
    ratio = results["redis"]["ok_per_s"] / results["memory"]["ok_per_s"] if results["memory"]["ok_per_s"] else 0.0
    clean = all(r["errors"] <= MAX_ERROR_RATE * max(r["requests"], 1) for r in results.values())
    return ratio, ratio >= min_ratio and clean


def report(results: dict[str, dict], ns: argparse.Namespace, argv: list[str], n_known: int, ratios: list[float]) -> str:
    ratio, met = verdict(results, ns.min_ratio)
    rows, problems = [], []
    for name, r in results.items():
        cpu = r["cpu"]
        per_answer = 1e3 * cpu["gateway"] / r["ok_per_s"] if r["ok_per_s"] else float("nan")
        redis_cpu = f"{cpu['redis-server']:.0%}" if "redis-server" in cpu else "-"
        rows.append(
            f"| {name} | {r['ok_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['features_p50_ms']:.2f} | "
            f"{cpu['gateway']:.0%} | {per_answer:.2f} | {cpu['load generator']:.0%} | {redis_cpu} | "
            f"{cpu['other processes']:.0%} | {r['requests']:,} | {r['errors']} |"
        )
        problems += [f"- {name}: {count} x {what}" for what, count in r["problems"].items()]
    where = "unpinned" if ns.server_cores == "none" else f"on core(s) {ns.server_cores}"
    load = "unpinned" if ns.load_cores == "none" else f"on core(s) {ns.load_cores}"
    header = (
        "| online store | answers/s | p50 ms | p99 ms | features p50 ms | gateway CPU | gateway CPU ms/answer "
        "| load generator CPU | redis-server CPU | other CPU | requests | errors |"
    )
    return "\n".join(
        [
            f"# /v1/recommend with the Redis online store vs in-process, {dt.date.today().isoformat()}",
            "",
            f"`{' '.join(['python -m bench.online_store', *argv])}` on {cpu_model()} ({os.cpu_count()} CPUs): "
            f"gateway {where} on the models of {ns.artifacts.name}/ and {ns.repository.name}/, load generator "
            f"and redis-server {load}; {ns.concurrency} concurrent clients in a closed loop, "
            f"{ns.seconds:g} s per store in {ns.rounds} alternating rounds, each after a {ns.warmup:g} s warm-up; "
            f"{ns.users} users "
            f"({n_known} known to the export, {ns.users - n_known} new), {ns.events_per_user} online events each "
            "posted first.",
            "",
            header,
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"**Redis / in-process throughput: {ratio:.3f}** (objective >= {ns.min_ratio:g} with at most "
            f"{MAX_ERROR_RATE:.1%} errors: {'met' if met else 'missed'}); per round: "
            f"{', '.join(f'{r:.3f}' for r in ratios)}.",
            "",
            *(["Failed answers:", *problems, ""] if problems else []),
            "answers/s: correct answers (200, k items sorted, not a fallback, not degraded) per second. p50/p99: "
            "client-side latency (the clients' own queueing included). features: the gateway's own "
            "timings_ms['features'], which includes the online store read (and any wait for the event loop). CPU: "
            "share of one core over the measured window, all threads; 'other': everything else the machine ran "
            "meanwhile (near 0 % for a fair comparison).",
            "",
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.online_store", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=16, help="measured seconds per store, all rounds together")
    p.add_argument("--warmup", type=float, default=1, help="seconds before each round, not counted")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds per store (--seconds split over them)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--events-per-user", type=int, default=6)
    p.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--min-ratio", type=float, default=MIN_RATIO)
    p.add_argument("--server-cores", default="0", help="taskset list for the gateway, or none")
    p.add_argument("--load-cores", default="1", help="taskset list for this load generator and redis-server, or none")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ns = parse_args(argv)
    if not (ns.artifacts / "features" / "users.npz").is_file():
        print(f"no {ns.artifacts}/features/users.npz: build the models first (make models)", file=sys.stderr)
        return 2
    if ns.load_cores != "none" and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        # The load generator off the gateway's core (the gateway and redis-server get their own taskset).
        os.sched_setaffinity(0, {c for part in ns.load_cores.split(",") for c in _span(part)})
    users, events, n_known = bench_users(ns.artifacts, ns.users, ns.events_per_user)
    reqs = [{"user_id": u, "k": 10, "candidates": 200} for u in users]
    pool = [json.dumps(r).encode() for r in reqs]
    windows = {name: Window() for name in STORES}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="online-store-bench-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        redis_port = servers.free_port()
        redis = start_redis(redis_port, None if ns.load_cores == "none" else ns.load_cores)
        stack.callback(_stop, redis)
        server = next(iter(child_pids(redis.pid)), None)  # redis-server itself, under its launcher
        urls = {"memory": "memory", "redis": f"redis://127.0.0.1:{redis_port}/0"}
        # Both gateways up at once (the idle one costs nothing): the rounds alternate between them, in the
        # order A B B A ..., so that a drift or a neighbour's burst falls on both stores alike.
        targets = {
            name: start_gateway(stack, urls[name], ns, tmp / name, events, server if name == "redis" else None)
            for name in STORES
        }
        for i in range(ns.rounds):
            got = {}
            for name in STORES if i % 2 == 0 else STORES[::-1]:
                t = targets[name]
                got[name] = asyncio.run(
                    drive(t.base, pool, reqs, ns.seconds / ns.rounds, ns.warmup, ns.concurrency, t.watch)
                )
                windows[name].add(got[name])
            ratios.append(got["redis"].ok_per_s / got["memory"].ok_per_s if got["memory"].ok_per_s else 0.0)
    results = {name: w.summary() for name, w in windows.items()}
    text = report(results, ns, argv, n_known, ratios)
    out = ns.out or ROOT / "bench" / "results" / f"online_store-{machine_slug()}-{dt.date.today().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0 if verdict(results, ns.min_ratio)[1] else 1


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=15)


def _span(part: str) -> range:
    lo, _, hi = part.partition("-")
    return range(int(lo), int(hi or lo) + 1)


if __name__ == "__main__":
    raise SystemExit(main())
