"""Storefront traffic against the gateway's HTTP API (or anything serving the same API, e.g. the naive peer).

    locust -f bench/locustfile.py --headless --host http://127.0.0.1:8080 --csv out/run --html out/run.html \
        --steps 1,2,4,8,16,32 --step-seconds 10 --warmup-seconds 2 --slo-p99-ms 50

Mix: recommend 70 %, intent 20 %, forecast 10 % (`--mix`); an endpoint the server reports unavailable in
/readyz `components`, or without request bodies, is left out and the rest keep their proportions (stated
in the summary). Users are closed-loop (no think time by default), so users = requests in flight.

Step load: each `--steps` level runs `--step-seconds`; requests that started in a step's first
`--warmup-seconds` are not counted. A step meets the objective when p99 <= `--slo-p99-ms` and the error
rate <= `--max-error-rate`; after `--stop-after-miss` missed steps the test stops (more load only adds
queueing). The answer is the highest-throughput step that met it. Exit code 1 when no step met the objective
(or `--min-rps` was not reached), so CI can gate on it. Beside locust's own `--csv` / `--html` output:
`<csv prefix>_steps.csv` (exact per-step, per-endpoint percentiles) and `<csv prefix>_summary.json`.

Every answer is validated with the gateway's response models and checked for sense (k items, sorted
scores, one result per text, ordered quantiles); a wrong answer counts as a failure, not as throughput.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from locust import FastHttpUser, LoadTestShape, events, task
from locust.env import Environment
from pydantic import ValidationError

from bench.checks import CHECKS, DEFAULT_MIX, MODEL_STAGES, parse_mix
from bench.payloads import ENDPOINTS, build_pool, load_pool
from bench.steps import StepRecorder, server_timing_ms, write_steps_csv

log = logging.getLogger("bench.locustfile")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser.add_argument_group("storefront benchmark (bench/locustfile.py)")
    g.add_argument("--mix", default=DEFAULT_MIX, help="endpoint weights, e.g. recommend=70,intent=20,forecast=10")
    g.add_argument("--payloads", default="", help="request pool JSON (bench.payloads); default: built from --artifacts")
    g.add_argument("--artifacts", default="artifacts", help="artifacts directory to draw request bodies from")
    g.add_argument("--steps", default="1,2,4,8,16,32", help="user counts of the step load, in order")
    g.add_argument("--step-seconds", type=float, default=10.0, help="duration of each step")
    g.add_argument("--warmup-seconds", type=float, default=2.0, help="start of each step left out of its figures")
    g.add_argument("--slo-p99-ms", type=float, default=50.0, help="latency objective: p99 at or below this")
    g.add_argument("--max-error-rate", type=float, default=0.001, help="a step with more failures misses")
    g.add_argument("--stop-after-miss", type=int, default=1, help="stop after this many steps missed the objective")
    g.add_argument("--min-rps", type=float, default=0.0, help="also require this throughput at the objective")
    g.add_argument("--think-ms", type=float, default=0.0, help="pause between a user's requests")
    g.add_argument("--seed", type=int, default=0, help="seed of the request choice")


class _State:
    """What the whole run shares: the options, the request pool, the active mix and the recorder."""

    def __init__(self) -> None:
        self.ready = False
        self.pool: dict[str, list[dict[str, Any]]] = {}
        self.names: list[str] = []
        self.weights: list[float] = []
        self.dropped: dict[str, str] = {}
        self.recorder: StepRecorder | None = None
        self.options: Any = None
        self.host = ""
        self.cpu_start = (0.0, 0.0)  # (process CPU seconds, wall seconds) when the run started

    def setup(self, env: Environment) -> None:
        if self.ready:
            return
        o = self.options = env.parsed_options
        self.host = env.host or ""
        self.recorder = StepRecorder(o.warmup_seconds, o.slo_p99_ms, o.max_error_rate)
        self.cpu_start = (_cpu_seconds(), time.monotonic())
        self.pool = load_pool(Path(o.payloads)) if o.payloads else build_pool(Path(o.artifacts))
        wanted = parse_mix(o.mix)
        components = _ready_components(self.host)
        for name, weight in wanted.items():
            if not self.pool.get(name):
                self.dropped[name] = "no request bodies (artifacts missing)"
            elif components.get(name, "ok") != "ok":
                self.dropped[name] = f"server reports it unavailable: {components[name]}"
            elif weight > 0:
                self.names.append(name)
                self.weights.append(weight)
        for name, why in self.dropped.items():
            log.warning("leaving %s out of the mix: %s", name, why)
        if not self.names:
            raise RuntimeError(f"no endpoint left to load: {self.dropped}")
        self.ready = True

    def summary(self, env: Environment | None = None) -> dict[str, Any]:
        assert self.recorder is not None and self.options is not None
        best = self.recorder.best()
        o = self.options
        met = best is not None and best.rps >= o.min_rps
        total = sum(self.weights)
        cpu, wall = _cpu_seconds() - self.cpu_start[0], time.monotonic() - self.cpu_start[1]
        return {
            "host": self.host,
            "mix": {n: round(100 * w / total, 1) for n, w in zip(self.names, self.weights, strict=True)},
            "dropped": self.dropped,
            "slo_p99_ms": o.slo_p99_ms,
            "max_error_rate": o.max_error_rate,
            "min_rps": o.min_rps,
            "steps": [r.__dict__ for r in self.recorder.aggregate()],
            "best": best.__dict__ if best else None,
            "objective_met": met,
            # A saturated load generator understates the server: say how busy it was.
            "load_generator_cpu": cpu / max(wall, 1e-9),
            "load_generator_cpu_warning": bool(getattr(env.runner, "cpu_warning_emitted", False)) if env else False,
        }


STATE = _State()
_USER_SEEDS = itertools.count()


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _ready_components(host: str) -> dict[str, str]:
    """/readyz `components` ({part: 'ok' or why not}); empty when the server does not say."""
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/readyz", timeout=5) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:  # a 503 body still lists the components
        raw = exc.read()
    except OSError:  # no answer: assume everything is served, the answer checks will tell
        raw = b"{}"
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    components = body.get("components", {}) if isinstance(body, dict) else {}
    # The gateway names artifacts (features, retriever, intent, forecast); map them onto endpoints.
    return {
        "recommend": components.get("retriever", components.get("features", "ok")),
        "intent": components.get("intent", "ok"),
        "forecast": components.get("forecast", "ok"),
    }


class Storefront(FastHttpUser):
    """One shopper session: picks an endpoint by the mix and a body from the pool, checks the answer."""

    def wait_time(self) -> float:
        return STATE.options.think_ms / 1e3 if STATE.options else 0.0

    def on_start(self) -> None:
        STATE.setup(self.environment)
        self.rng = random.Random(STATE.options.seed * 100_003 + next(_USER_SEEDS))

    @task
    def shop(self) -> None:
        name = self.rng.choices(STATE.names, STATE.weights)[0]
        req = self.rng.choice(STATE.pool[name])
        ok, server_ms, model_ms, app_ms = False, None, None, None
        with self.client.post(ENDPOINTS[name], json=req, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
            else:
                try:
                    problem, timings = CHECKS[name](resp.content or b"", req)
                except ValidationError as exc:
                    problem, timings = f"invalid answer: {exc.errors()[0]['msg']}", {}
                if problem:
                    resp.failure(problem)
                else:
                    resp.success()
                    ok = True
                    if timings:
                        server_ms = sum(timings.values())
                        model_ms = sum(v for k, v in timings.items() if k in MODEL_STAGES)
                    app_ms = server_timing_ms(resp.headers.get("server-timing"))
        if STATE.recorder is not None:
            STATE.recorder.record(
                name, float(resp.request_meta["response_time"]), ok, server_ms, model_ms, app_ms=app_ms
            )


class StepLoad(LoadTestShape):
    """`--steps` user counts for `--step-seconds` each; stops after `--stop-after-miss` missed steps."""

    def __init__(self) -> None:
        super().__init__()
        self.index = -1
        self.step_end = 0.0
        self.misses = 0

    def tick(self) -> tuple[int, float] | None:
        env = self.runner.environment if self.runner else None
        if env is None:
            return None
        STATE.setup(env)
        o, rec = STATE.options, STATE.recorder
        assert rec is not None
        steps = [int(s) for s in str(o.steps).split(",") if s.strip()]
        now = self.get_run_time()
        if self.index >= 0 and now < self.step_end:
            return steps[self.index], 100.0
        if self.index >= 0:
            rows = rec.close()
            agg = rows[0] if rows else None
            if agg is not None:
                log.warning(
                    "step %d: %d users, %.1f req/s, p50 %.1f ms, p99 %.1f ms, errors %.2f %% -> %s",
                    agg.step,
                    agg.users,
                    agg.rps,
                    agg.p50_ms,
                    agg.p99_ms,
                    100 * agg.error_rate,
                    "met" if agg.slo_met else "MISSED",
                )
            if agg is None or not agg.slo_met:
                self.misses += 1
            if self.misses >= o.stop_after_miss or self.index + 1 >= len(steps):
                return None
        self.index += 1
        self.step_end = now + o.step_seconds
        rec.begin(self.index, steps[self.index])
        return steps[self.index], 100.0


@events.quitting.add_listener
def _finish(environment: Environment, **_: Any) -> None:
    """Close an open step (run stopped early), write the steps CSV and summary, set the exit code."""
    if not STATE.ready or STATE.recorder is None:
        return
    if STATE.recorder.current is not None:
        STATE.recorder.close()
    summary = STATE.summary(environment)
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        write_steps_csv(STATE.recorder.rows, Path(f"{prefix}_steps.csv"))
        Path(f"{prefix}_summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    best = summary["best"]
    if best:
        slo = STATE.options.slo_p99_ms
        log.warning("best step meeting p99 <= %.0f ms: %d users, %.1f req/s", slo, best["users"], best["rps"])
    else:
        log.warning("no step met p99 <= %.0f ms", STATE.options.slo_p99_ms)
    environment.process_exit_code = 0 if summary["objective_met"] else 1
