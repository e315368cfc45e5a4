"""Where the gateway's time goes under load: py-spy samples it while locust sends the storefront mix.

    python -m bench.profile --label after [--users 8] [--seconds 20] [--artifacts artifacts]

The gateway (embedded backend, pinned to --server-cores like in `make bench`) runs as py-spy's child;
locust (bench/locustfile.py, on --load-cores) holds `--users` closed-loop users for `--seconds`. py-spy
writes a flame graph (SVG) of the gateway's on-CPU samples to bench/results/profile-<label>.svg, and a
table of where the samples fall (models, index, tokenizer, HTTP, validation, ...) to profile-<label>.md,
with the load test's throughput, so a before and an after can be compared.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import servers
from bench.loadtest import LoadPlan, run_load
from bench.payloads import build_pool, write_pool

# Samples that are not load: start-up (anywhere in the stack), and threads waiting (innermost frame; py-spy's
# idle detection does not see through every wait, and uvloop's epoll shows as the frame that runs the loop).
STARTUP = (
    "Runtime.start (",
    "lifespan (",
    "_find_and_load (",
    "startup (",
    "stop (serving",
    "sha256_file (",
    "_load_one (",
)
WAITING = (
    "_worker (concurrent/futures/thread.py",
    "Condition.wait (threading.py",
    "Queue.get (queue.py",
    "Runner.run (asyncio/runners.py",
    "Thread.run (threading.py",
    "_bootstrap_inner (threading.py",
)
# Where a busy sample falls: the first of these a stack contains, searched from the innermost frame outwards.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model (ONNX Runtime run)", ("run (onnxruntime",)),
    ("index (FAISS search)", ("search (faiss", "replacement_search (faiss")),
    ("tokenizer", ("encode_batch (serving", "encode (serving/intent")),
    ("request validation (pydantic)", ("validate_python", "model_validate", "_validate")),
    ("answer building (pydantic, JSON)", ("serialize_response", "model_dump", "jsonable_encoder", "render (")),
    ("metrics (prometheus_client)", ("(prometheus_client",)),
    ("micro-batching", ("(serving/runtime/batching.py",)),
    ("features and re-ranking", ("(serving/recommend/", "(serving/forecast/", "(serving/intent/")),
    ("HTTP server and framework", ("(uvicorn", "(starlette", "(fastapi", "(httptools", "(h11")),
    ("event loop, threads", ("(asyncio", "(uvloop", "(concurrent/futures", "(threading.py")),
)

_TITLE = re.compile(r"<title>(.*?) \(([\d,]+) samples?, [\d.]+%\)</title>")


def py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise SystemExit("bench.profile needs py-spy (pip install py-spy; it is in the dev extra)")
    return exe


def collapsed_stacks(raw: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw output: one 'frame;frame;... count' line per distinct stack (outermost first)."""
    out = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def categorise(stacks: list[tuple[list[str], int]]) -> tuple[dict[str, int], int, int]:
    """-> (busy samples by category, waiting samples, start-up samples)."""
    totals: dict[str, int] = {name: 0 for name, _ in CATEGORIES}
    totals["other"] = 0
    waiting = startup = 0
    for frames, count in stacks:
        if any(n in f for f in frames for n in STARTUP):
            startup += count
        elif any(n in frames[-1] for n in WAITING):
            waiting += count
        else:
            totals[_category(frames)] += count
    return totals, waiting, startup


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first: a model run inside the batcher counts as the model
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return "other"


def flamegraph_titles(svg: Path) -> int:
    """Total samples in an SVG py-spy wrote (its root frame's title)."""
    counts = [int(m.group(2).replace(",", "")) for m in _TITLE.finditer(svg.read_text())]
    return max(counts) if counts else 0


def record(py_spy_args: list[str], gateway: servers.Server) -> subprocess.Popen[bytes]:
    """Start the gateway as py-spy's child (its environment, pinned), wait until it is ready."""
    cmd = [*py_spy_args, "--", *servers.pinned(gateway.cmd, gateway.cores)]
    gateway.log_path.parent.mkdir(parents=True, exist_ok=True)
    log = gateway.log_path.open("wb")
    proc = subprocess.Popen(
        cmd, cwd=servers.ROOT, env={**os.environ, **gateway.env}, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + gateway.ready_timeout_s
    while servers.http_status(gateway.ready_url) != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise servers.ServerError(f"gateway under py-spy did not start:\n{servers.tail(gateway.log_path)}")
        time.sleep(0.2)
    return proc


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the gateway (py-spy's child), so py-spy sees it exit and writes its output."""
    kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False).stdout.split()
    for pid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=servers.ROOT, capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True, help="name of the result files, e.g. before / after")
    p.add_argument("--artifacts", type=Path, default=servers.ROOT / "artifacts")
    p.add_argument("--repository", type=Path, default=servers.ROOT / "model_repository")
    p.add_argument("--results", type=Path, default=servers.ROOT / "bench" / "results")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--server-cores", default="0")
    p.add_argument("--load-cores", default="1")
    p.add_argument("--env", action="append", default=[], help="extra SERVING_* setting for the gateway, K=V")
    ns = p.parse_args(argv)
    raw_dir = ns.results / "raw" / f"profile-{ns.label}-{time.strftime('%Y%m%d-%H%M%S')}"
    raw_dir.mkdir(parents=True, exist_ok=True)
    payloads = write_pool(build_pool(ns.artifacts), raw_dir / "payloads.json")
    extra = dict(kv.split("=", 1) for kv in ns.env)
    port = servers.free_port()
    gw = servers.gateway(
        port,
        raw_dir / "gateway.log",
        artifacts=ns.artifacts.resolve(),
        repository=ns.repository.resolve(),
        cores=ns.server_cores,
        extra_env=extra,
    )
    svg, raw = ns.results / f"profile-{ns.label}.svg", raw_dir / "stacks.txt"
    summary = {}
    for fmt, out in (("flamegraph", svg), ("raw", raw)):  # one load run per format: py-spy writes one
        spy = [py_spy(), "record", "--rate", str(ns.rate), "--format", fmt, "--output", str(out)]
        proc = record(spy, gw)
        try:
            plan = LoadPlan((ns.users,), ns.seconds, 1.0, stop_after_miss=99)
            result = run_load(
                gw.ready_url.rsplit("/", 1)[0], raw_dir / fmt, plan, payloads=payloads, cores=ns.load_cores
            )
            summary[fmt] = [s.__dict__ for s in result.steps if s.endpoint == "all"]
        finally:
            stop_child(proc)
    totals, waiting, startup = categorise(collapsed_stacks(raw))
    samples = sum(totals.values()) or 1
    step = summary["raw"][-1] if summary.get("raw") else {}
    lines = [
        f"# Gateway profile: {ns.label}",
        "",
        f"Command: `python -m bench.profile {' '.join(sys.argv[1:] if argv is None else argv)}`; "
        f"git {_commit()}; {ns.users} users for {ns.seconds:.0f} s, gateway on core(s) {ns.server_cores} under py-spy "
        f"({ns.rate} samples/s, on-CPU only), {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Load during the sampled run: {step.get('rps', 0):.0f} req/s, p50 {step.get('p50_ms', 0):.1f} ms, "
        f"p99 {step.get('p99_ms', 0):.1f} ms (py-spy itself slows the gateway a little).",
        f"Flame graph: [profile-{ns.label}.svg](profile-{ns.label}.svg) ({flamegraph_titles(svg):,} samples).",
        "",
        f"Of {samples + waiting + startup:,} thread samples, {startup:,} are start-up and shut-down and {waiting:,} "
        "are threads waiting for work (the event loop in epoll, idle pool workers); the rest, the busy ones:",
        "",
        "| where the gateway's busy time goes | share of busy samples |",
        "|---|---|",
        *(f"| {name} | {100 * n / samples:.1f} % |" for name, n in sorted(totals.items(), key=lambda kv: -kv[1])),
        "",
    ]
    md = ns.results / f"profile-{ns.label}.md"
    md.write_text("\n".join(lines))
    (raw_dir / "summary.json").write_text(
        json.dumps({"totals": totals, "waiting": waiting, "startup": startup, "load": summary}, indent=1) + "\n"
    )
    print("\n".join(html.unescape(x) for x in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
