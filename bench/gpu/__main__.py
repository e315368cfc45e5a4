"""`python -m bench.gpu [--dry-run]`: the GPU paths run for real, in one script a lent GPU machine runs in minutes.

Steps (each timed, each failure recorded and the next step run):
1. parity: every model in the spec table on the CUDA execution provider, fp32 and fp16, against PyTorch;
2. gateway: `python -m bench --device cuda` (embedded backend on the CUDA EP vs the naive peer on CUDA
   PyTorch, micro-batching on and off, the compute bound), on the artifacts given (`--build` trains and
   exports the quick models first, on the GPU);
3. retrieval: exact top-k with CuPy at 1M and 10M items vs FAISS on the CPU (recall@200, queries/s);
4. training: samples/s of one quick-profile epoch per model on the GPU, and a DDP smoke run with NCCL;
5. `pytest -m gpu`.
Writes bench/results/<gpu>-<date>.md + .json + .png. `--dry-run` runs every step on the CPU with tiny sizes
(tiny training profile, smoke bench profile, 20k items), which the test suite does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import servers
from bench.__main__ import git_state, machine_slug, versions
from bench.gpu import parity, retrieval, train_speed
from bench.gpu.report import update_readme, write_report

ROOT = servers.ROOT
STEPS = ("parity", "gateway", "retrieval", "training", "pytest")


def say(msg: str) -> None:
    print(f"[bench.gpu {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU with tiny sizes")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma list of {', '.join(STEPS)}")
    p.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--build", action="store_true", help="train (quick, on the device) and export the models first")
    p.add_argument("--sizes", default="", help="retrieval catalogue sizes (default 1M,10M; dry run 20k)")
    p.add_argument("--server-cores", default="", help="taskset list for the servers (default: half the cores)")
    p.add_argument("--load-cores", default="", help="taskset list for locust (default: the other half)")
    p.add_argument("--machine", default="", help="name in the result file (default: the GPU's name)")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README whose GPU markers get the goals")
    p.add_argument("--no-readme", action="store_true", help="leave the README alone (a dry run always does)")
    return p.parse_args(argv)


def gpu_facts() -> dict[str, Any]:
    """What the machine has: the GPU (torch's view), ORT's providers, CuPy, FAISS's GPUs."""
    facts: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        import torch

        facts["torch_cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["gpu_count"] = torch.cuda.device_count()
    except ImportError:
        facts["torch_cuda"] = False
    import onnxruntime as ort

    facts["ort_providers"] = ort.get_available_providers()
    from serving.recommend.exact_index import cupy_device

    facts["cupy"] = cupy_device() is not None
    try:
        import faiss

        facts["faiss_gpus"] = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
    except ImportError:
        facts["faiss_gpus"] = None
    return facts


def _cores(ns: argparse.Namespace) -> tuple[str, str]:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n < 2:
        return "0", "0"
    half = n // 2
    return ns.server_cores or f"0-{half - 1}", ns.load_cores or f"{half}-{n - 1}"


def _run(cmd: list[str], log: Path, timeout_s: float, env: dict[str, str] | None = None) -> None:
    say(" ".join(cmd))
    with log.open("w") as f:
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=timeout_s, env=env)
    if r.returncode != 0:
        raise RuntimeError(
            f"exit {r.returncode}; last lines of {log}:\n" + "\n".join(log.read_text().splitlines()[-15:])
        )


class Plan:
    """The sizes of one run: the GPU's or the dry run's."""

    def __init__(self, ns: argparse.Namespace, facts: dict[str, Any], work: Path):
        self.ns, self.facts, self.work = ns, facts, work
        self.dry = ns.dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.providers = ["CPUExecutionProvider"] if self.dry else ["CUDAExecutionProvider", "CPUExecutionProvider"]
        default_sizes = "20000" if self.dry else "1000000,10000000"
        self.sizes = [int(float(x)) for x in (ns.sizes or default_sizes).split(",") if x]
        self.train_profile = "tiny" if self.dry else "quick"
        self.bench_profile = "smoke" if self.dry else "quick"


def step_parity(plan: Plan) -> Any:
    return parity.run(plan.ns.artifacts, plan.ns.repository, plan.providers, batches=(1, 3) if plan.dry else (1, 3, 64))


def step_gateway(plan: Plan) -> Any:
    ns = plan.ns
    server, load = _cores(ns)
    out = plan.work / "bench"
    parts = "embedded,batching" if plan.dry else "naive,embedded,latency,batching,bound"
    cmd = [sys.executable, "-m", "bench", "--profile", plan.bench_profile, "--device", plan.device, "--parts", parts]
    cmd += ["--artifacts", str(ns.artifacts), "--repository", str(ns.repository), "--results", str(out)]
    cmd += ["--no-readme", "--machine", "gpu run", "--server-cores", server, "--load-cores", load]
    _run(cmd, plan.work / "bench.log", 420)
    (summary,) = out.glob("gpu-run-*.json")
    body = json.loads(summary.read_text())
    keep = ("load", "fixed", "latency", "bound", "goals")
    return {"command": " ".join(cmd[1:]), **{k: body.get(k) for k in keep}, "errors": body["meta"].get("errors", {})}


def step_retrieval(plan: Plan) -> Any:
    return retrieval.run(plan.sizes, n_batches=2 if plan.dry else 4, repeats=2 if plan.dry else 5)


def step_training(plan: Plan) -> Any:
    # The dry run leaves the intent model out: its smallest profile is a minutes-long pass on a CPU.
    models = [m for m in train_speed.MODELS if not (plan.dry and m == "intent")]
    rows = train_speed.speed(models, plan.train_profile, plan.device, plan.work / "train")
    ddp = train_speed.ddp_smoke(plan.device, 1, plan.work / "train")
    return {"speed": rows, "ddp": ddp}


def step_pytest(plan: Plan) -> Any:
    # The dry run checks the step on one file; collecting the whole suite inside the suite costs half a minute.
    where = "tests/serving/recommend/test_exact_index.py" if plan.dry else "tests"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", where]
    say(" ".join(cmd[1:]))
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    return {"command": " ".join(cmd[1:]), "exit": r.returncode, "summary": lines[-1] if lines else ""}


STEP_FNS: dict[str, Callable[[Plan], Any]] = {
    "parity": step_parity,
    "gateway": step_gateway,
    "retrieval": step_retrieval,
    "training": step_training,
    "pytest": step_pytest,
}


def build_models(plan: Plan) -> None:
    """Quick models trained on the device and exported (what `make models` does, with --device)."""
    art = plan.ns.artifacts
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    _run(
        [sys.executable, "-m", "training", "build", "--profile", plan.train_profile, "--out", str(art)],
        plan.work / "build.log",
        900,
        env,
    )
    _run(
        [sys.executable, "-m", "export", "--checkpoints", str(art / "checkpoints"), "--artifacts", str(art)],
        plan.work / "export.log",
        600,
        env,
    )


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    steps = [s for s in ns.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        print(f"bench.gpu: unknown steps {sorted(unknown)}; choose from {list(STEPS)}", file=sys.stderr)
        return 2
    facts = gpu_facts()
    if not ns.dry_run and not facts.get("torch_cuda"):
        print("bench.gpu: no CUDA GPU visible to torch; use --dry-run to try the script on the CPU", file=sys.stderr)
        return 2
    t_start = time.monotonic()
    meta: dict[str, Any] = {
        "dry_run": ns.dry_run,
        "facts": facts,
        "versions": versions(),
        "git": git_state(),
        "date": dt.date.today().isoformat(),
        "command": "python -m bench.gpu " + " ".join(argv or sys.argv[1:]),
        "seconds": {},
        "errors": {},
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        plan = Plan(ns, facts, Path(tmp))
        if ns.build:
            t0 = time.monotonic()
            build_models(plan)
            meta["seconds"]["build"] = round(time.monotonic() - t0, 1)
        for name in steps:
            t0 = time.monotonic()
            say(f"step {name}")
            try:
                results[name] = STEP_FNS[name](plan)
            except Exception as exc:  # one failing step must not cost the others' figures
                meta["errors"][name] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
                say(f"{name} FAILED: {exc}")
                traceback.print_exc()
            meta["seconds"][name] = round(time.monotonic() - t0, 1)
    meta["seconds"]["total"] = round(time.monotonic() - t_start, 1)
    name = ns.machine or ("dry-run-cpu" if ns.dry_run else facts.get("gpu", "gpu"))
    md = write_report(results, meta, ns.results, f"{machine_slug(name)}-{meta['date']}")
    if not (ns.dry_run or ns.no_readme):
        update_readme(ns.readme, md, results, meta)
    say(f"report {md}; {meta['seconds']['total']:.0f} s; failed steps: {sorted(meta['errors']) or 'none'}")
    return 1 if meta["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
