"""`python -m bench --profile quick|full [--device cpu|cuda]` (`make bench`): load tests, micro-benchmarks, report.

In one run on one machine, servers pinned to `--server-cores` and the load generator to `--load-cores`:
1. the naive peer (bench/baseline), 2. the gateway with its embedded backend, 3. the gateway over a local
Triton, each driven by bench/locustfile.py's storefront mix with the step load (a discarded warm-up run,
then `repeats` measured runs; every figure is their median); micro-batching on vs off at a fixed 32 users;
4. Triton alone (DIN, user tower, BERT) at fixed concurrency; the compute bound of the mix on the same request
bodies (bench/bound.py); then the micro-benchmarks (bench/micro.py).
Raw output goes to bench/results/raw/<time>/ (not committed), the report (markdown + PNG plots + a JSON
summary) to bench/results/<machine>-<date>.* (bench/report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import servers
from bench.loadtest import LoadPlan, LoadResult, run_load
from bench.payloads import build_pool, write_pool
from bench.profiles import PROFILES, Profile

ROOT = servers.ROOT
T0 = time.monotonic()
PACKAGES = (
    "numpy",
    "onnxruntime",
    "onnxruntime-gpu",
    "faiss-cpu",
    "torch",
    "transformers",
    "fastapi",
    "uvicorn",
    "pydantic",
    "tritonclient",
    "nvidia-pytriton",
    "locust",
)


def say(msg: str) -> None:
    m, s = divmod(int(time.monotonic() - T0), 60)
    print(f"[bench {m:02d}:{s:02d}] {msg}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="execution device of the servers")
    p.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    p.add_argument(
        "--parts", default="naive,embedded,latency,batching,triton,bound,micro", help="what to run (comma list)"
    )
    p.add_argument("--slo-p99-ms", type=float, default=50.0, help="latency objective of the step load")
    p.add_argument("--server-cores", default="0", help="taskset list for the servers")
    p.add_argument("--load-cores", default="1", help="taskset list for locust and the Triton client")
    p.add_argument("--repeats", type=int, default=0, help="override the profile's repeats")
    p.add_argument("--machine", default="", help="name in the result file (default: cores and CPU model)")
    p.add_argument(
        "--readme", type=Path, default=ROOT / "README.md", help="README whose BENCH markers get the new figures"
    )
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------
# Facts about the run, for the report


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_slug(name: str = "") -> str:
    text = name or f"{os.cpu_count()}cpu-{cpu_model()}"
    slug = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(filter(None, slug.split("-")))[:48]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def model_sizes(repository: Path, artifacts: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in sorted(repository.glob("*/[0-9]*/model.onnx")):
        out[f"{f.parent.parent.name} v{f.parent.name} (onnx)"] = round(f.stat().st_size / 2**20, 2)
    for f in sorted((artifacts / "checkpoints").glob("*.pt")):
        out[f"{f.stem} (checkpoint)"] = round(f.stat().st_size / 2**20, 2)
    index = artifacts / "retrieval" / "items.faiss"
    if index.is_file():
        out["items.faiss"] = round(index.stat().st_size / 2**20, 2)
    return out


def batching_configs(repository: Path) -> dict[str, dict[str, Any]]:
    """Each served model's batching settings, read from its config.pbtxt text (what both batchers follow)."""
    out: dict[str, dict[str, Any]] = {}
    for cfg in sorted(repository.glob("*/config.pbtxt")):
        text = cfg.read_text()
        size = re.search(r"^max_batch_size:\s*(\d+)", text, re.M)
        if not size or not any(cfg.parent.glob("[0-9]*/model.onnx")):
            continue
        delay = re.search(r"max_queue_delay_microseconds:\s*(\d+)", text)
        out[cfg.parent.name] = {
            "max_batch_size": int(size.group(1)),
            "preferred": [int(x) for x in re.findall(r"preferred_batch_size:\s*(\d+)", text)],
            "max_queue_delay_us": int(delay.group(1)) if delay else None,
        }
    return out


def manifest_facts(artifacts: Path) -> dict[str, Any]:
    m = json.loads((artifacts / "manifest.json").read_text())
    r = m.get("retrieval", {})
    keys = ("item_count", "embedding_dim", "index_type", "index_params")
    return {"retrieval": {k: r.get(k) for k in keys}, "models": m.get("models", {}), "features": m.get("features", {})}


def machine_facts() -> dict[str, Any]:
    mem = ""
    with contextlib.suppress(OSError, StopIteration):
        mem = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
    gpu = ""
    try:
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False, timeout=10)
        gpu = r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "memory": " ".join(mem.split()[1:]) if mem else "",
        "platform": platform.platform(),
        "gpu": gpu or "none",
    }


class Run:
    """Where everything of one benchmark run goes, and what the report needs to know about it."""

    def __init__(self, ns: argparse.Namespace, profile: Profile):
        self.ns, self.profile = ns, profile
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.raw = ns.results / "raw" / self.stamp
        self.raw.mkdir(parents=True, exist_ok=True)
        self.repeats = ns.repeats or profile.repeats
        self.meta: dict[str, Any] = {
            "stamp": self.stamp,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": "python -m bench " + shlex.join(sys.argv[1:]),
            "profile": profile.__dict__,
            "device": ns.device,
            "slo_p99_ms": ns.slo_p99_ms,
            "repeats": self.repeats,
            "server_cores": ns.server_cores,
            "load_cores": ns.load_cores,
            "machine": machine_facts(),
            "machine_name": machine_slug(ns.machine),
            "versions": versions(),
            "git": git_state(),
            "model_sizes": model_sizes(ns.repository, ns.artifacts),
            "manifest": manifest_facts(ns.artifacts),
            "batching": batching_configs(ns.repository),
            "commands": {},
            "load": [],
            "errors": {},
            "phases": {},
        }
        self.payloads = write_pool(build_pool(ns.artifacts), self.raw / "payloads.json")

    def note_load(self, phase: str) -> None:
        self.meta["load"].append({"phase": phase, "t_s": round(time.monotonic() - T0, 1), "loadavg": os.getloadavg()})

    def save(self) -> None:
        self.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        (self.raw / "meta.json").write_text(json.dumps(self.meta, indent=1, default=str) + "\n")

    def plan(self, steps: tuple[int, ...] | None = None, step_s: float | None = None, mix: str | None = None):
        p = self.profile
        return LoadPlan(
            steps=steps or p.steps,
            step_s=step_s or p.step_s,
            warmup_s=p.warmup_s,
            slo_p99_ms=self.ns.slo_p99_ms,
            # a fixed-load run must run its one step to the end, whatever its latency
            stop_after_miss=1 if steps is None else 99,
            mix=mix or LoadPlan.mix,
        )

    def series(self, group: str, name: str, host: str, plan: LoadPlan) -> list[LoadResult]:
        """A discarded warm-up run, then `repeats` measured runs of `plan` against `host`."""
        out_dir = self.raw / group / name
        warm = LoadPlan((8,), self.profile.warmup_run_s, 0.0, plan.slo_p99_ms, stop_after_miss=99, mix=plan.mix)
        run_load(host, out_dir / "warmup", warm, payloads=self.payloads, cores=self.ns.load_cores)
        results = []
        for i in range(self.repeats):
            self.note_load(f"{group}/{name} run {i + 1}")
            r = run_load(host, out_dir / f"run{i + 1}", plan, payloads=self.payloads, cores=self.ns.load_cores, seed=i)
            best = r.summary.get("best")
            agg = [s for s in r.steps if s.endpoint == "all"]
            last = agg[-1] if agg else None
            fig = (
                f"best {best['rps']:.0f} req/s at {best['users']} users (p99 {best['p99_ms']:.1f} ms)"
                if best
                else "no step met the objective"
            )
            tail = f"; last step {last.users} users {last.rps:.0f} req/s p99 {last.p99_ms:.1f} ms" if last else ""
            say(f"{group}/{name} run {i + 1}/{self.repeats}: {fig}{tail}")
            results.append(r)
        self.meta["commands"][f"locust {group}/{name}"] = results[-1].command if results else ""
        if results:
            self.meta.setdefault("mix", {})[name] = results[-1].summary.get("mix", {})
            if results[-1].summary.get("dropped"):
                self.meta.setdefault("dropped", {})[name] = results[-1].summary["dropped"]
        return results


# ---------------------------------------------------------------------------------------------------------
# Phases


def _gateway(run: Run, name: str, extra_env: dict[str, str] | None = None) -> servers.Server:
    port = servers.free_port()
    return servers.gateway(
        port,
        run.raw / "logs" / f"{name}.log",
        artifacts=run.ns.artifacts.resolve(),
        repository=run.ns.repository.resolve(),
        device=run.ns.device,
        cores=run.ns.server_cores,
        extra_env=extra_env,
    )


def _rel(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _host(server: servers.Server) -> str:
    return server.ready_url.rsplit("/", 1)[0]


def phase_naive(run: Run) -> None:
    port = servers.free_port()
    log = run.raw / "logs" / "naive.log"
    s = servers.naive(port, log, artifacts=run.ns.artifacts.resolve(), device=run.ns.device, cores=run.ns.server_cores)
    with s:
        say(f"naive peer ready in {s.startup_s:.1f} s")
        run.meta["commands"]["server naive"] = s.command_line
        run.series("load", "naive", _host(s), run.plan())


def phase_embedded(run: Run) -> None:
    with _gateway(run, "gateway_embedded") as s:
        say(f"gateway (embedded) ready in {s.startup_s:.1f} s")
        run.meta["commands"]["server gateway_embedded"] = s.command_line
        run.series("load", "gateway_embedded", _host(s), run.plan())


def phase_latency(run: Run) -> None:
    """Every endpoint, /v1/price included, at one user: each endpoint's own latency, without queueing."""
    p = run.profile
    with _gateway(run, "gateway_latency") as s:
        say(f"gateway (latency per endpoint) ready in {s.startup_s:.1f} s; 1 user for {p.fixed_s:.0f} s")
        run.meta["commands"]["server gateway_latency"] = s.command_line
        mix = "recommend=25,intent=25,forecast=25,price=25"
        run.series("latency", "endpoints", _host(s), run.plan((1,), p.fixed_s, mix=mix))


def phase_batching(run: Run) -> None:
    """Intent messages only: the endpoint where batching pays on a CPU (BERT rows), on vs off at a fixed load."""
    p = run.profile
    for name, env in (("batching_on", {"SERVING_BATCHING": "true"}), ("batching_off", {"SERVING_BATCHING": "false"})):
        with _gateway(run, name, env) as s:
            say(f"gateway ({name}) ready in {s.startup_s:.1f} s; intent, {p.fixed_users} users for {p.fixed_s:.0f} s")
            run.meta["commands"][f"server {name}"] = s.command_line
            run.series("fixed", name, _host(s), run.plan((p.fixed_users,), p.fixed_s, mix="intent=100"))


def _start_triton(run: Run, attempts: int = 2) -> tuple[servers.Server, servers.TritonPorts]:
    """The local Triton, started again once when a start fails (a busy machine can miss a deadline)."""
    for attempt in range(1, attempts + 1):
        ports = servers.TritonPorts.pick()
        log = run.raw / "logs" / f"triton{'' if attempt == 1 else attempt}.log"
        repo, build = run.ns.repository.resolve(), run.raw / "triton"
        tri = servers.triton(ports, log, repository=repo, build_dir=build, cores=run.ns.server_cores)
        try:
            return tri.start(), ports
        except servers.ServerError as exc:
            if attempt == attempts:
                raise
            say(f"Triton did not start (attempt {attempt}): {short_error(exc)}; trying again")
    raise AssertionError("unreachable")


def phase_triton(run: Run) -> None:
    tri, ports = _start_triton(run)
    with servers.stopping(tri):
        say(f"local Triton ready in {tri.startup_s:.1f} s (gRPC {ports.grpc})")
        run.meta["commands"]["server triton"] = tri.command_line
        run.meta["triton_server"] = _triton_version(ports.http)
        env = {"SERVING_BACKEND": "triton", "SERVING_TRITON_URL": f"127.0.0.1:{ports.grpc}"}
        with _gateway(run, "gateway_triton", env) as gw:
            say(f"gateway (Triton backend) ready in {gw.startup_s:.1f} s")
            run.meta["commands"]["server gateway_triton"] = gw.command_line
            run.series("load", "gateway_triton", _host(gw), run.plan())
        p = run.profile
        cmd = [sys.executable, "-m", "bench.triton_direct", "--url", f"127.0.0.1:{ports.grpc}"]
        cmd += ["--artifacts", str(run.ns.artifacts.resolve()), "--repository", str(run.ns.repository.resolve())]
        cmd += ["--models", "din,user_tower,intent_bert"]
        cmd += ["--concurrency", ",".join(map(str, p.direct_concurrency)), "--seconds", str(p.direct_s)]
        cmd += ["--out", str(run.raw / "triton_direct.csv")]
        cmd = servers.pinned(cmd, run.ns.load_cores)
        run.meta["commands"]["triton alone"] = shlex.join(cmd)
        run.note_load("triton alone")
        say("Triton alone: DIN, user tower, BERT at concurrency " + ",".join(map(str, p.direct_concurrency)))
        env_t = {**os.environ, **servers.thread_env(run.ns.load_cores)}
        r = subprocess.run(cmd, cwd=ROOT, env=env_t, capture_output=True, text=True, check=False)
        (run.raw / "logs" / "triton_direct.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"bench.triton_direct failed:\n{r.stderr[-2000:]}")
        for line in r.stdout.splitlines():
            say("  " + line)


def _triton_version(http_port: int) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2", timeout=5) as resp:
            body = json.loads(resp.read())
        return f"{body.get('name', 'triton')} {body.get('version', '?')}"
    except Exception:
        return "unknown"


def phase_bound(run: Run) -> None:
    threads = servers.n_cores(run.ns.server_cores)
    cmd = [sys.executable, "-m", "bench.bound", "--payloads", str(run.payloads), "--out", str(run.raw)]
    cmd += ["--artifacts", str(run.ns.artifacts.resolve()), "--repository", str(run.ns.repository.resolve())]
    cmd += ["--threads", str(threads), "--seconds", str(max(1.0, 4 * run.profile.micro_seconds))]
    cmd = servers.pinned(cmd, run.ns.server_cores)
    run.meta["commands"]["bound"] = shlex.join(cmd)
    run.note_load("bound")
    say("compute bound: the mix's model, index and tokenizer work on the load test's bodies, no server")
    env = {**os.environ, **servers.thread_env(run.ns.server_cores)}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def phase_micro(run: Run) -> None:
    p = run.profile
    threads = servers.n_cores(run.ns.server_cores)
    cmd = [sys.executable, "-m", "bench.micro", "--parts", "din,bert,faiss", "--out", str(run.raw / "micro")]
    cmd += ["--artifacts", str(run.ns.artifacts.resolve()), "--repository", str(run.ns.repository.resolve())]
    cmd += ["--device", run.ns.device, "--threads", str(threads), "--seconds", str(p.micro_seconds)]
    cmd += ["--din-batches", ",".join(map(str, p.din_batches)), "--bert-batches", ",".join(map(str, p.bert_batches))]
    cmd += ["--bert-quality-texts", str(p.bert_quality_texts), "--items", str(p.faiss_items)]
    cmd += ["--kinds", ",".join(p.faiss_kinds), "--nlist", str(p.faiss_nlist), "--queries", str(p.faiss_queries)]
    cmd += ["--single-queries", str(p.faiss_single_queries)]
    cmd = servers.pinned(cmd, run.ns.server_cores)
    run.meta["commands"]["micro"] = shlex.join(cmd)
    run.note_load("micro")
    say(f"micro-benchmarks (DIN, BERT, FAISS {p.faiss_items:,} items: {', '.join(p.faiss_kinds)})")
    env = {**os.environ, **servers.thread_env(run.ns.server_cores)}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def short_error(exc: BaseException) -> str:
    """One line for the report: the exception, or the last error line it quotes (a locust or server log)."""
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    quoted = [x for x in lines[1:] if "Error" in x.split(":", 1)[0]]
    text = quoted[-1] if quoted else (lines[0] if lines else "")
    return f"{type(exc).__name__}: {text}"[:400]


PHASES = {
    "naive": phase_naive,
    "embedded": phase_embedded,
    "latency": phase_latency,
    "batching": phase_batching,
    "triton": phase_triton,
    "bound": phase_bound,
    "micro": phase_micro,
}


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    if not (ns.artifacts / "manifest.json").is_file():
        print(
            f"bench: no {ns.artifacts / 'manifest.json'}: build the models first with `make serve` or `make models`",
            file=sys.stderr,
        )
        return 2
    parts = [x for x in ns.parts.split(",") if x]
    unknown = set(parts) - set(PHASES)
    if unknown:
        print(f"bench: unknown parts {sorted(unknown)}; choose from {list(PHASES)}", file=sys.stderr)
        return 2
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if available < 2 and ns.load_cores != ns.server_cores:
        say(f"only {available} CPU available: server and load generator share core(s) {ns.server_cores}")
        ns.load_cores = ns.server_cores
    profile = PROFILES[ns.profile]
    run = Run(ns, profile)
    say(
        f"profile {profile.name}, device {ns.device}: servers on cores {ns.server_cores}, load on {ns.load_cores}; "
        f"{run.repeats} runs per figure; raw output in {_rel(run.raw)}"
    )
    if ns.device == "cuda":
        say("device cuda: ORT CUDA provider, FAISS GPU index where available, torch on cuda for the naive peer")
    failed = 0
    for part in parts:
        t0 = time.monotonic()
        run.note_load(f"{part} start")
        try:
            PHASES[part](run)
        except Exception as exc:  # one broken system must not cost the others' figures
            failed += 1
            run.meta["errors"][part] = short_error(exc)
            say(f"{part} FAILED: {exc}")
            traceback.print_exc()
        run.meta["phases"][part] = round(time.monotonic() - t0, 1)
        run.save()
    run.note_load("end")
    run.save()

    from bench.report import END, START, update_readme, write_report

    md = write_report(run.raw, ns.results)
    say(f"report: {_rel(md)}")
    if not ns.no_readme and ns.readme.is_file():
        text = ns.readme.read_text()
        if START in text and END in text:
            update_readme(ns.readme, ns.results)
            say(f"{_rel(ns.readme)}: performance section updated from the newest result")
        else:
            say(f"{_rel(ns.readme)} has no {START} / {END} markers: performance section not written")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
