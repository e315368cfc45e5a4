"""Triton's dynamic-batching settings compared through the gateway: throughput and latency of the mix, A/B.

    python -m bench.triton_queue [--variant shipped] [--variant 'waiting:din=2000/512,1024;tcn=5000']
                                 [--mix recommend=70,intent=20,forecast=10] [--users 1,4,8] [--seconds 10]
                                 [--rounds 2] [--artifacts artifacts]
                                 [--repository model_repository] [--server-cores 0] [--load-cores 1] [--out FILE.md]

(--out default: bench/results/triton_queue-<machine>-<date>.md.)

A variant, optionally named first (`NAME:`), is `shipped` (the repository's configs as export wrote them) or
`;`-separated `model=DELAY_US[/B,B..]` items: that model's `max_queue_delay_microseconds` and preferred batch
sizes (none after the delay: none), set in a copy of the repository's config.pbtxt, everything else as shipped.
Each round starts the local Triton (`python -m serving.triton`) on each variant's repository in turn, a gateway
over it (`SERVING_BACKEND=triton`; both on --server-cores, as `make bench` runs them), and drives it with the load
test itself (bench/loadtest.py: locust on --load-cores, bench/payloads.py bodies, every answer checked) sending the
mix (default recommend 70, intent 20, forecast 10) at each --users level for --seconds, the first 2 s of each left
out. Variants alternate within every round, so a drift of the machine's speed falls on all of them alike; the
report gives each round and the median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from bench import servers
from bench.__main__ import cpu_model, machine_slug
from bench.checks import DEFAULT_MIX, parse_mix
from bench.loadtest import LoadPlan, run_load
from bench.payloads import build_pool, write_pool
from bench.steps import ALL

SHIPPED = "shipped"
WARMUP_S = 2.0


def parse_variant(text: str) -> dict[str, tuple[int, tuple[int, ...]]]:
    """'din=2000/512,1024;tcn=100' -> {model: (delay_us, preferred sizes)}; 'shipped' -> {}. ValueError if malformed."""
    if text.strip() == SHIPPED:
        return {}
    out: dict[str, tuple[int, tuple[int, ...]]] = {}
    for item in filter(None, (s.strip() for s in text.split(";"))):
        model, sep, value = item.partition("=")
        delay, _, sizes = value.partition("/")
        if not sep or not model.strip() or not delay.strip().isdigit():
            raise ValueError(f"variant item {item!r} is not model=DELAY_US[/B,B..]")
        try:
            preferred = tuple(int(b) for b in sizes.split(",") if b.strip())
        except ValueError:
            raise ValueError(f"variant item {item!r}: preferred batch sizes must be integers") from None
        out[model.strip()] = (int(delay), preferred)
    if not out:
        raise ValueError(f"variant {text!r} names no model")
    return out


def named_variant(text: str, i: int) -> tuple[str, str]:
    """'NAME:SPEC' -> (NAME, SPEC); a bare SPEC is named 'shipped' or 'v<i>'."""
    head, sep, rest = text.partition(":")
    if sep and "=" not in head:
        return head.strip(), rest.strip()
    return (SHIPPED if text.strip() == SHIPPED else f"v{i}"), text.strip()


def with_batching(config_text: str, delay_us: int, preferred: tuple[int, ...]) -> str:
    """A config.pbtxt with its dynamic batching's queue delay and preferred sizes replaced, the rest as it was."""
    cfg = text_format.Parse(config_text, mc.ModelConfig())
    if cfg.max_batch_size <= 0:
        raise ValueError(f"{cfg.name}: max_batch_size 0, nothing is batched")
    bad = [b for b in preferred if b > cfg.max_batch_size]
    if bad:
        raise ValueError(f"{cfg.name}: preferred batch sizes {bad} > max_batch_size {cfg.max_batch_size}")
    cfg.dynamic_batching.max_queue_delay_microseconds = delay_us
    del cfg.dynamic_batching.preferred_batch_size[:]
    cfg.dynamic_batching.preferred_batch_size.extend(preferred)
    return text_format.MessageToString(cfg)


def variant_repository(repository: Path, variant: dict[str, tuple[int, tuple[int, ...]]], work: Path) -> Path:
    """`repository` itself for 'shipped'; else a copy under `work` (model files linked) with the variant's configs."""
    if not variant:
        return repository
    missing = [m for m in variant if not (repository / m / "config.pbtxt").is_file()]
    if missing:
        raise ValueError(f"no config.pbtxt for {missing} in {repository}")
    out = Path(tempfile.mkdtemp(prefix="repo-", dir=work))
    shutil.copytree(
        repository, out, dirs_exist_ok=True, copy_function=os.link if _same_fs(repository, work) else shutil.copy2
    )
    for model, (delay, preferred) in variant.items():
        path = out / model / "config.pbtxt"
        text = path.read_text()
        path.unlink()  # it may be a hard link to the shipped file: write a new one
        path.write_text(with_batching(text, delay, preferred))
    return out


def _same_fs(a: Path, b: Path) -> bool:
    return a.resolve().stat().st_dev == b.resolve().stat().st_dev


def run_round(ns: argparse.Namespace, name: str, repo: Path, payloads: Path, work: Path) -> list[dict]:
    """One variant: the local Triton on `repo`, a gateway over it, locust's steps (bench/loadtest.py) against it."""
    ports = servers.TritonPorts.pick()
    cores = None if ns.server_cores == "none" else ns.server_cores
    tri = servers.triton(ports, work / "triton.log", repository=repo, build_dir=work / f"view-{name}", cores=cores)
    with tri:
        port = servers.free_port()
        env = {
            "SERVING_BACKEND": "triton",
            "SERVING_TRITON_URL": f"127.0.0.1:{ports.grpc}",
            "SERVING_GRPC_ENABLED": "false",
        }
        gw = servers.gateway(
            port, work / "gateway.log", artifacts=ns.artifacts, repository=ns.repository, cores=cores, extra_env=env
        )
        with gw:
            plan = LoadPlan(tuple(ns.users), ns.seconds, WARMUP_S, stop_after_miss=len(ns.users), mix=ns.mix)
            load_cores = None if ns.load_cores == "none" else ns.load_cores
            r = run_load(f"http://127.0.0.1:{port}", work / f"load-{name}", plan, payloads=payloads, cores=load_cores)
    steps = {s.users: s for s in r.steps if s.endpoint == ALL}
    if missing := [u for u in ns.users if u not in steps]:
        raise RuntimeError(f"{name}: locust gave no step for {missing} users (exit {r.returncode}, {r.prefix}.log)")
    return [
        {"users": u, "rps": s.rps, "p50": s.p50_ms, "p99": s.p99_ms, "errors": s.failures, "requests": s.requests}
        for u, s in ((u, steps[u]) for u in ns.users)
    ]


def report(results: dict[str, list[list[dict]]], ns: argparse.Namespace, argv: list[str]) -> str:
    rows = []
    for name, rounds in results.items():
        for i, levels in enumerate(ns.users):
            per = [r[i] for r in rounds]
            med = {k: statistics.median(p[k] for p in per) for k in ("rps", "p50", "p99")}
            each = ", ".join(f"{p['rps']:.0f}" for p in per)
            rows.append(
                f"| {name} | {levels} | **{med['rps']:.0f}** ({each}) | {med['p50']:.1f} | {med['p99']:.1f} | "
                f"{sum(p['errors'] for p in per)} of {sum(p['requests'] for p in per):,} |"
            )
    return "\n".join(
        [
            f"# Triton dynamic batching through the gateway, {dt.date.today().isoformat()}",
            "",
            f"`{' '.join(['python -m bench.triton_queue', *argv])}` on {cpu_model()} ({os.cpu_count()} CPUs): "
            f"the local Triton and a gateway over it on core(s) {ns.server_cores}, locust's closed-loop users "
            f"(bench/locustfile.py) on core(s) {ns.load_cores}; "
            f"mix {ns.mix}, {ns.seconds:g} s per level, the first {WARMUP_S:g} s left out, {ns.rounds} round(s), the "
            "variants in turn within each.",
            "",
            *[f"- `{name}`: {text}" for name, text in ns.variant_text.items()],
            "",
            "| variant | users | answers/s, median (each round) | p50 ms | p99 ms | failed answers |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "answers/s: checked answers per second; p50/p99: client latency (medians over the rounds).",
            "",
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.triton_queue", description=__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", default=None, help="'shipped' or 'model=DELAY_US[/B,..];...'")
    p.add_argument("--mix", default=DEFAULT_MIX, help="endpoint weights, as the load test's --mix")
    p.add_argument("--users", default="1,4,8", help="closed-loop client counts")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--artifacts", type=Path, default=servers.ROOT / "artifacts")
    p.add_argument("--repository", type=Path, default=servers.ROOT / "model_repository")
    p.add_argument("--server-cores", default="0")
    p.add_argument("--load-cores", default="1")
    p.add_argument("--out", type=Path, default=None)
    ns = p.parse_args(argv)
    ns.variants, ns.variant_text = {}, {}
    for i, text in enumerate(ns.variant or [SHIPPED]):
        name, spec = named_variant(text, i)
        if name in ns.variants:
            p.error(f"two variants named {name!r}")
        ns.variants[name] = parse_variant(spec)
        ns.variant_text[name] = "the repository as exported" if spec == SHIPPED else spec
    ns.users = [int(u) for u in ns.users.split(",") if u.strip()]
    if ns.seconds <= WARMUP_S:
        p.error(f"--seconds must be more than the {WARMUP_S:g} s each step leaves out")
    return ns


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ns = parse_args(argv)
    pool = build_pool(ns.artifacts)
    if missing := [e for e in parse_mix(ns.mix) if not pool.get(e)]:
        raise SystemExit(f"no request bodies for {missing}: build the models first (make models)")
    with tempfile.TemporaryDirectory(prefix="triton_queue-") as tmp:
        work = Path(tmp)
        payloads = write_pool(pool, work / "payloads.json")
        repos = {name: variant_repository(ns.repository.resolve(), v, work) for name, v in ns.variants.items()}
        results: dict[str, list[list[dict]]] = {name: [] for name in repos}
        for r in range(ns.rounds):
            for name, repo in repos.items():
                results[name].append(run_round(ns, name, repo, payloads, work))
                print(
                    f"[triton_queue] round {r + 1} {name}: "
                    + ", ".join(
                        f"{x['users']} users {x['rps']:.0f}/s p50 {x['p50']:.1f} ms" for x in results[name][-1]
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    md = report(results, ns, argv)
    out = ns.out or servers.ROOT / "bench" / "results" / (
        f"triton_queue-{machine_slug()}-{dt.date.today().isoformat()}.md"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
