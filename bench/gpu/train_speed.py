"""Training speed per model (samples/s of one epoch's training pass, from the task's own history) and a DDP
smoke run under torchrun (NCCL on a GPU, gloo on the CPU), each through `python -m training train`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.servers import ROOT

MODELS = ("din", "two_tower", "tcn", "intent")
SAMPLE_UNIT = {"din": "impressions", "two_tower": "(user, item) pairs", "tcn": "series windows", "intent": "texts"}


def _train(
    args: Sequence[str], out: Path, timeout_s: float, launcher: Sequence[str] = (sys.executable,)
) -> tuple[int, str, float]:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    r = subprocess.run(
        [*launcher, "-m", "training", "train", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    (out / "train.log").write_text(r.stdout + r.stderr)
    return r.returncode, (r.stdout + r.stderr)[-800:], time.perf_counter() - t0


def _report(out: Path, model: str) -> dict[str, Any]:
    return json.loads((out / "reports" / f"{model}.json").read_text())


def speed(models: Sequence[str], profile: str, device: str, work: Path, timeout_s: float = 300) -> list[dict[str, Any]]:
    """One epoch of each model's `profile` training on `device`."""
    rows = []
    for model in models:
        out = work / model
        rc, tail, wall = _train([model, "--profile", profile, "--device", device, "--max-epochs", "1"], out, timeout_s)
        row: dict[str, Any] = {
            "model": model,
            "profile": profile,
            "device": device,
            "wall_s": wall,
            "unit": SAMPLE_UNIT.get(model, "samples"),
        }
        if rc != 0:
            rows.append({**row, "error": f"exit {rc}: {tail}"})
            continue
        report = _report(out, model)
        first = (report.get("history") or report["epochs"])[0]  # the rec tasks say history, the others epochs
        n, s = first["train_samples"], first["train_seconds"]
        rows.append({**row, "samples": n, "train_s": s, "samples_per_s": n / s if s > 0 else float("nan")})
    return rows


def ddp_smoke(device: str, nproc: int, work: Path, timeout_s: float = 300) -> dict[str, Any]:
    """DIN's tiny profile under `torchrun --standalone`; passes when it exits 0 and rank 0 reports the world size."""
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    launcher = (torchrun, "--standalone", "--nproc_per_node", str(nproc))
    out = work / "ddp"
    rc, tail, wall = _train(
        ["din", "--profile", "tiny", "--device", device, "--max-epochs", "1"], out, timeout_s, launcher
    )
    backend = "nccl" if device == "cuda" else "gloo"
    row = {"backend": backend, "processes": nproc, "wall_s": wall, "ok": False}
    if rc != 0:
        return {**row, "error": f"exit {rc}: {tail}"}
    world = _report(out, "din").get("world_size")
    return {**row, "ok": world == nproc, "world_size": world}
