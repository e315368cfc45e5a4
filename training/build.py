"""Train several models side by side: `python -m training build [MODEL ...] --profile quick --out artifacts [--jobs N]`.

The first `make serve` trains four independent models; one after another on 2 cores they leave a core
half idle (small models gain little from a second intra-op thread). Here each model is a
`python -m training train` subprocess on one of N lanes with cores / N threads, lanes filled longest
job first. Lane 0 runs in the foreground with its progress bars; the others write to
`<out>/logs/train_<model>.log` (a bar per process on one terminal would overwrite each other), and a line
says when each ends. A failed model stops the build: the others are stopped and its log's tail printed.
Models whose checkpoint exists are skipped unless `--retrain`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.tasks import TASKS
from training.tasks.base import PROFILE_NAMES

# Relative cost of each model's quick run (measured one-thread wall times, s): sets the lanes' order only.
COST: dict[str, float] = {"intent": 170.0, "din": 110.0, "tcn": 45.0, "two_tower": 45.0}
LOG_TAIL_LINES = 20


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_lanes(models: Sequence[str], jobs: int) -> list[list[str]]:
    """Longest job first onto the least-loaded lane (LPT); lane 0 gets the first (largest) job."""
    lanes: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(models))))]
    load = [0.0] * len(lanes)
    for m in sorted(models, key=lambda m: -COST.get(m, 60.0)):
        i = load.index(min(load))
        lanes[i].append(m)
        load[i] += COST.get(m, 60.0)
    return lanes


@dataclass
class Lane:
    models: list[str]
    foreground: bool
    proc: subprocess.Popen | None = None
    current: str | None = None
    started: float = 0.0
    log: Path | None = None
    done: list[str] = field(default_factory=list)


Command = Callable[[str], list[str]]


def train_command(profile: str, out: Path, seed: int) -> Command:
    return lambda model: [
        sys.executable, "-m", "training", "train", model, "--profile", profile, "--out", str(out), "--seed", str(seed),
    ]  # fmt: skip


def _start(lane: Lane, command: Command, env: dict[str, str], log_dir: Path) -> None:
    model = lane.models[len(lane.done)]
    lane.current, lane.started = model, time.perf_counter()
    if lane.foreground:
        lane.log = None
        lane.proc = subprocess.Popen(command(model), env=env)
    else:
        lane.log = log_dir / f"train_{model}.log"
        with lane.log.open("w") as f:
            lane.proc = subprocess.Popen(command(model), env=env, stdout=f, stderr=subprocess.STDOUT)
        print(f"[build] {model}: training in the background (log: {lane.log})", file=sys.stderr, flush=True)


def _tail(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])


def run_lanes(lanes: list[list[str]], command: Command, log_dir: Path, threads: int, poll_s: float = 0.2) -> int:
    """Run every lane's models in order, lanes concurrently. -> 0, or the first failure's exit code."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    active = [Lane(list(models), foreground=i == 0) for i, models in enumerate(lanes) if models]
    for lane in active:
        _start(lane, command, env, log_dir)
    t0 = time.perf_counter()
    try:
        while active:
            for lane in list(active):
                rc = lane.proc.poll() if lane.proc else 0
                if rc is None:
                    continue
                took = time.perf_counter() - lane.started
                if rc != 0:
                    print(f"[build] {lane.current} failed (exit {rc}) after {took:.0f} s", file=sys.stderr)
                    tail = _tail(lane.log)
                    if tail:
                        print(f"--- last lines of {lane.log} ---\n{tail}", file=sys.stderr)
                    return rc
                print(f"[build] {lane.current}: done in {took:.0f} s", file=sys.stderr, flush=True)
                lane.done.append(lane.current)
                if len(lane.done) < len(lane.models):
                    _start(lane, command, env, log_dir)
                else:
                    active.remove(lane)
            time.sleep(poll_s)
    finally:
        for lane in active:  # a failure or Ctrl-C: stop what still runs
            if lane.proc is not None and lane.proc.poll() is None:
                lane.proc.terminate()
                lane.proc.wait()
    print(f"[build] all models trained in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training build", description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help=f"any of {', '.join(TASKS)} (default: all)")
    ap.add_argument("--profile", choices=PROFILE_NAMES, default="quick")
    ap.add_argument("--out", type=Path, default=Path("artifacts"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=min(2, _cores()), help="models trained at once")
    ap.add_argument("--retrain", action="store_true", help="train models that already have a checkpoint too")
    ns = ap.parse_args(argv)
    unknown = sorted(set(ns.models) - set(TASKS))
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    models = ns.models or list(TASKS)
    todo = []
    for m in models:
        if not ns.retrain and (ns.out / "checkpoints" / f"{m}.pt").exists():
            print(f"[build] {m}: using {ns.out}/checkpoints/{m}.pt (--retrain to train again)", file=sys.stderr)
        else:
            todo.append(m)
    if not todo:
        return 0
    lanes = plan_lanes(todo, ns.jobs)
    threads = max(1, _cores() // len(lanes))
    print(f"[build] {ns.profile} profile, {len(lanes)} at once: " + " | ".join(" -> ".join(x) for x in lanes))
    return run_lanes(lanes, train_command(ns.profile, ns.out, ns.seed), ns.out / "logs", threads)
