"""Soak: the gateway's memory under steady load, to show it does not grow.

`python -m bench.soak --artifacts artifacts --repository model_repository --seconds 300` starts
`python -m serving` on those models, sends the storefront mix (bench/payloads.py request pools) from
`--clients` concurrent clients for `--seconds`, samples the server's RSS (/proc/<pid>/status VmRSS) every
`--every` seconds, and writes bench/results/soak-<date>.{md,json,png}. The verdict compares the mean RSS
of the last fifth of the run with the mean of the fifth after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

import httpx

from bench.payloads import ENDPOINTS, build_pool
from bench.servers import free_port, gateway

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _load(base: str, pool: dict, clients: int, until: float, counts: dict) -> None:
    names = [n for n, bodies in pool.items() if bodies]
    weights = {"recommend": 70, "intent": 20, "forecast": 10}

    async def one(k: int) -> None:
        rng = random.Random(k)
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            while time.monotonic() < until:
                name = rng.choices(names, [weights.get(n, 5) for n in names])[0]
                r = await c.post(ENDPOINTS[name], json=rng.choice(pool[name]))
                counts[r.status_code] = counts.get(r.status_code, 0) + 1

    await asyncio.gather(*(one(k) for k in range(clients)))


async def _sample(pid: int, every: float, until: float, out: list) -> None:
    t0 = time.monotonic()
    while time.monotonic() < until:
        out.append((round(time.monotonic() - t0, 1), rss_mb(pid)))
        await asyncio.sleep(every)


def _plot(samples: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([s[0] for s in samples], [s[1] for s in samples], marker=".")
    ax.set_xlabel("seconds under load")
    ax.set_ylabel("gateway RSS (MB)")
    ax.set_title("Soak: gateway memory under the storefront mix")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--every", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=20.0, help="seconds of load before the first sample")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    pool = build_pool(a.artifacts)
    port = free_port()
    log = a.out / "raw" / "soak-gateway.log"
    counts: dict[int, int] = {}
    samples: list = []
    with gateway(port, log, artifacts=a.artifacts, repository=a.repository, cores=None) as server:
        assert server.proc is not None
        base = f"http://127.0.0.1:{port}"

        async def run() -> None:
            start = time.monotonic()
            await _load(base, pool, a.clients, start + a.warmup, counts)  # warm-up: caches, arenas, batch shapes
            until = time.monotonic() + a.seconds
            await asyncio.gather(
                _load(base, pool, a.clients, until, counts), _sample(server.proc.pid, a.every, until, samples)
            )

        asyncio.run(run())
    fifth = max(len(samples) // 5, 1)
    early = sum(s[1] for s in samples[:fifth]) / fifth
    late = sum(s[1] for s in samples[-fifth:]) / fifth
    result = {
        "date": dt.date.today().isoformat(),
        "seconds": a.seconds,
        "clients": a.clients,
        "requests": sum(counts.values()),
        "statuses": {str(k): v for k, v in sorted(counts.items())},
        "rss_mb_first_fifth": round(early, 1),
        "rss_mb_last_fifth": round(late, 1),
        "rss_mb_max": round(max(s[1] for s in samples), 1),
        "growth_pct": round(100 * (late - early) / early, 2),
        "samples": samples,
        "command": " ".join(["python -m bench.soak", *(argv if argv is not None else sys.argv[1:])]),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"soak-{result['date']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    _plot(samples, stem.with_suffix(".png"))
    stem.with_suffix(".md").write_text(
        f"# Soak, {result['date']}\n\n`{result['command']}`\n\n"
        f"Models: `{a.repository}`, artifacts `{a.artifacts}`.\n\n"
        f"{result['requests']} requests in {a.seconds:g} s from {a.clients} clients, statuses {result['statuses']}.\n"
        f"Gateway RSS: {early:.1f} MB (first fifth) -> {late:.1f} MB (last fifth), max {result['rss_mb_max']} MB, "
        f"growth {result['growth_pct']} %.\n\n![RSS over time]({stem.with_suffix('.png').name})\n"
    )
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
