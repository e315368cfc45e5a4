"""How many CPUs this process may use, and whether model and index calls should leave the event loop.

A call handed to a worker thread pays a hand-off both ways (and, when the loop thread holds the GIL, the
worker waits for it to be released). That buys parallelism only when there is a second CPU to run on, or
when the call waits on a GPU. With one CPU and the work on it, the call runs on the loop: requests that
arrive meanwhile queue in the socket buffers and join the next batch, as they would have anyway.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus(cgroup_file: Path = CGROUP_CPU_MAX) -> int:
    """CPUs in the process's affinity mask, capped by a cgroup v2 CPU quota (a container's CPU limit)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cgroup_file.read_text().split()[:2]
        if quota != "max" and float(period) > 0:
            n = min(n, max(1, math.ceil(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def run_inline(choice: str, on_gpu: bool, cpus: int | None = None) -> bool:
    """SERVING_MODEL_CALLS: `inline` / `thread` as said; `auto` = inline when there is one CPU and no GPU."""
    if choice not in ("auto", "inline", "thread"):
        raise ValueError(f"model_calls must be auto, inline or thread, not {choice!r}")
    if choice != "auto":
        return choice == "inline"
    return not on_gpu and (usable_cpus() if cpus is None else cpus) == 1
