"""Run bench/locustfile.py headless in a pinned subprocess and collect what it wrote.

The load generator runs on its own cores (`taskset`), separate from the server's, so the two do not
compete for CPU; its command line goes into the report as run.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.servers import ROOT, pinned, tail, thread_env
from bench.steps import StepStats, read_steps_csv

LOCUSTFILE = ROOT / "bench" / "locustfile.py"


@dataclass(frozen=True)
class LoadPlan:
    steps: tuple[int, ...]
    step_s: float
    warmup_s: float
    slo_p99_ms: float = 50.0
    max_error_rate: float = 0.001
    stop_after_miss: int = 1
    mix: str = "recommend=70,intent=20,forecast=10"

    @property
    def longest_s(self) -> float:
        return len(self.steps) * (self.step_s + 1.5)


@dataclass
class LoadResult:
    prefix: Path
    returncode: int
    command: str
    steps: list[StepStats]
    summary: dict[str, Any]
    wall_s: float

    @property
    def objective_met(self) -> bool:
        return bool(self.summary.get("objective_met"))


def locust_command(host: str, prefix: Path, plan: LoadPlan, payloads: Path | None, seed: int = 0) -> list[str]:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host]
    cmd += ["--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary", "--loglevel", "WARNING"]
    cmd += ["--steps", ",".join(map(str, plan.steps)), "--step-seconds", str(plan.step_s)]
    cmd += ["--warmup-seconds", str(plan.warmup_s), "--slo-p99-ms", str(plan.slo_p99_ms)]
    cmd += ["--max-error-rate", str(plan.max_error_rate), "--stop-after-miss", str(plan.stop_after_miss)]
    cmd += ["--mix", plan.mix, "--seed", str(seed)]
    if payloads is not None:
        cmd += ["--payloads", str(payloads)]
    return cmd


def run_load(
    host: str,
    prefix: Path,
    plan: LoadPlan,
    *,
    payloads: Path | None = None,
    cores: str | None = "1",
    seed: int = 0,
) -> LoadResult:
    """One locust run: the step plan against `host`, CSV/HTML/steps/summary under `prefix`."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cmd = pinned(locust_command(host, prefix, plan, payloads, seed), cores)
    log_path = Path(f"{prefix}.log")
    env = {**os.environ, **(thread_env(cores) if cores else {})}
    t0 = time.perf_counter()
    with log_path.open("wb") as log:
        limit = plan.longest_s + 120
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=limit)
    wall = time.perf_counter() - t0
    steps_csv, summary_json = Path(f"{prefix}_steps.csv"), Path(f"{prefix}_summary.json")
    if not steps_csv.is_file() or not summary_json.is_file():
        raise RuntimeError(f"locust wrote no step results (exit {proc.returncode}):\n{tail(log_path)}")
    return LoadResult(
        prefix=prefix,
        returncode=proc.returncode,
        command=shlex.join(cmd),
        steps=read_steps_csv(steps_csv),
        summary=json.loads(summary_json.read_text()),
        wall_s=wall,
    )
