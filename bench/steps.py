"""Per-step latency bookkeeping for a step-load test (used inside the locust process).

Locust's own CSVs hold whole-run or sliding-window percentiles; a step-load search needs exact
percentiles per load level with each step's warm-up left out. The recorder keeps every completed
request's latency, tagged with the step it finished in, and drops those that started within the
step's first `warmup_s` seconds (users just spawned, connections opening, a queue building up).
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ALL = "all"  # the aggregate row's endpoint name

STEP_FIELDS = (
    "step",
    "users",
    "endpoint",
    "window_s",
    "requests",
    "failures",
    "error_rate",
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "max_ms",
    "server_p50_ms",
    "model_p50_ms",
    "overhead_p50_ms",
    "app_overhead_p50_ms",
    "transport_p50_ms",
    "slo_met",
)


@dataclass
class StepStats:
    step: int
    users: int
    endpoint: str
    window_s: float
    requests: int
    failures: int
    error_rate: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    server_p50_ms: float = math.nan  # the gateway's own stage total (timings_ms), where answers carry it
    model_p50_ms: float = math.nan  # the model/search stages among them
    overhead_p50_ms: float = math.nan  # p50 of (client latency - model stages), per request
    # The overhead split by the answer's Server-Timing (time in the app): p50 of (app - model stages), the
    # gateway's own code, and of (client latency - app), the server loop, HTTP parsing, kernel and client.
    app_overhead_p50_ms: float = math.nan
    transport_p50_ms: float = math.nan
    slo_met: bool = False


def percentile(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


@dataclass
class _Step:
    index: int
    users: int
    start: float
    measure_from: float
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    server: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    model: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    overhead: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    app_overhead: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    transport: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


class StepRecorder:
    """begin(step, users) -> record(...) per request -> close() -> StepStats rows (one per endpoint + 'all')."""

    def __init__(self, warmup_s: float, slo_p99_ms: float, max_error_rate: float, clock=time.monotonic):
        self.warmup_s, self.slo_p99_ms, self.max_error_rate = warmup_s, slo_p99_ms, max_error_rate
        self.clock = clock
        self.current: _Step | None = None
        self.rows: list[StepStats] = []

    def begin(self, index: int, users: int) -> None:
        now = self.clock()
        self.current = _Step(index, users, now, now + self.warmup_s)

    def record(
        self,
        endpoint: str,
        latency_ms: float,
        ok: bool,
        server_ms: float | None = None,
        model_ms: float | None = None,
        app_ms: float | None = None,
    ) -> None:
        step = self.current
        if step is None:
            return
        started = self.clock() - latency_ms / 1e3
        if started < step.measure_from:
            return  # began in the step's warm-up
        for name in (endpoint, ALL):
            step.latency[name].append(latency_ms)
            if not ok:
                step.failures[name] += 1
            if ok and server_ms is not None:
                step.server[name].append(server_ms)
            if ok and model_ms is not None:
                step.model[name].append(model_ms)
                step.overhead[name].append(latency_ms - model_ms)
                if app_ms is not None:
                    step.app_overhead[name].append(app_ms - model_ms)
            if ok and app_ms is not None:
                step.transport[name].append(latency_ms - app_ms)

    def close(self) -> list[StepStats]:
        """End the current step: its rows (aggregate first), also kept in `self.rows`."""
        step, self.current = self.current, None
        if step is None:
            return []
        window = max(self.clock() - step.measure_from, 1e-9)
        names = [ALL, *sorted(n for n in step.latency if n != ALL)]
        out = []
        for name in names:
            lat = np.asarray(step.latency[name], dtype=np.float64)
            n, fails = int(lat.size), int(step.failures[name])
            err = fails / n if n else math.nan
            p99 = percentile(lat, 99)
            row = StepStats(
                step=step.index,
                users=step.users,
                endpoint=name,
                window_s=round(window, 3),
                requests=n,
                failures=fails,
                error_rate=err,
                rps=(n - fails) / window,  # answered correctly per second: failures are not throughput
                p50_ms=percentile(lat, 50),
                p95_ms=percentile(lat, 95),
                p99_ms=p99,
                mean_ms=float(lat.mean()) if n else math.nan,
                max_ms=float(lat.max()) if n else math.nan,
                server_p50_ms=percentile(step.server[name], 50),
                model_p50_ms=percentile(step.model[name], 50),
                overhead_p50_ms=percentile(step.overhead[name], 50),
                app_overhead_p50_ms=percentile(step.app_overhead[name], 50),
                transport_p50_ms=percentile(step.transport[name], 50),
                slo_met=bool(n and p99 <= self.slo_p99_ms and err <= self.max_error_rate),
            )
            out.append(row)
        self.rows.extend(out)
        return out

    # ---- results

    def aggregate(self) -> list[StepStats]:
        return [r for r in self.rows if r.endpoint == ALL]

    def best(self) -> StepStats | None:
        """The highest-throughput step that met the objective."""
        met = [r for r in self.aggregate() if r.slo_met]
        return max(met, key=lambda r: r.rps) if met else None


def server_timing_ms(header: str | None, metric: str = "app") -> float | None:
    """`dur` of `metric` in a Server-Timing header (`app;dur=1.234`, the gateway's time in the app), or None."""
    for entry in (header or "").split(","):
        name, _, params = entry.strip().partition(";")
        if name.strip() != metric:
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None


def write_steps_csv(rows: list[StepStats], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=STEP_FIELDS)
        w.writeheader()
        for r in rows:
            d = asdict(r)
            w.writerow({k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v) for k, v in d.items()})
    return path


def read_steps_csv(path: Path) -> list[StepStats]:
    """The rows of a steps CSV (written by `write_steps_csv`), typed again."""
    out = []
    with Path(path).open(newline="") as f:
        for d in csv.DictReader(f):
            out.append(
                StepStats(
                    step=int(d["step"]),
                    users=int(d["users"]),
                    endpoint=d["endpoint"],
                    slo_met=d["slo_met"] == "True",
                    **{
                        k: (int(d[k]) if k in ("requests", "failures") else float(d[k] or "nan"))
                        for k in STEP_FIELDS
                        if k not in ("step", "users", "endpoint", "slo_met") and k in d  # older files lack some
                    },
                )
            )
    return out
