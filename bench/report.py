"""Benchmark report: a run's raw output -> summary JSON, markdown and PNG plots; the README performance section.

    python -m bench.report --raw bench/results/raw/<time>      # (re)write bench/results/<machine>-<date>.*
    python -m bench.report --readme README.md                  # README section from the newest result

Input (written by `python -m bench`): meta.json; load/<system>/run<i>_steps.csv (per step and endpoint, from
bench/locustfile.py); fixed/batching_on|off/run<i>_steps.csv; triton_direct.csv; micro/{din,bert,faiss}.csv
and micro/bert_quality.json. Any part may be missing (a partial run): its section says so.
Every figure is the median over the repeated runs; nothing here is a hard-coded result.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.steps import ALL, StepStats, read_steps_csv

START, END = "<!-- BENCH:START -->", "<!-- BENCH:END -->"
SYSTEMS = {
    "naive": "naive peer (FastAPI + eager PyTorch, no batching)",
    "gateway_embedded": "gateway, embedded ONNX Runtime",
    "gateway_triton": "gateway over local Triton",
}
GOALS = {
    "throughput": ">= 3x the naive peer's throughput at p99 <= SLO",
    "efficiency": ">= 80 % of the measured compute bound (the mix's model, index and tokenizer time)",
    "overhead_embedded": "<= 0.5 ms p50 time outside the model and index stages, every endpoint (embedded)",
    "overhead": "<= 1 ms p50 gateway overhead over Triton alone",
    "batching": ">= 1.5x intent throughput with micro-batching at 32 users",
    "tail": "p99 at 1 user <= 2x its p50, every endpoint (gateway, embedded)",
    "faiss": "recall@200 >= 0.95 at >= 5x exact search speed, 1M items",
}


# ---------------------------------------------------------------------------------------------------------
# Reading


def _median(values: Iterable[float]) -> float:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(statistics.median(v)) if v else math.nan


def _runs(directory: Path) -> list[list[StepStats]]:
    files = sorted(directory.glob("run*_steps.csv"), key=lambda p: int(re.sub(r"\D", "", p.name.split("_")[0]) or 0))
    return [read_steps_csv(f) for f in files]


def _load_gen_cpu(directory: Path) -> float:
    """The busiest load-generator process of a system's runs (CPU seconds per second; 1.0 = one core saturated)."""
    values = []
    for f in directory.glob("run*_summary.json"):
        with contextlib.suppress(OSError, ValueError, TypeError):
            values.append(float(json.loads(f.read_text()).get("load_generator_cpu")))
    return max(values) if values else math.nan


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    with path.open(newline="") as f:
        for d in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in d.items():
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    row[k] = v  # names and settings stay text
            out.append(row)
    return out


def summarise_series(runs: list[list[StepStats]]) -> dict[str, Any]:
    """Step-load runs of one system -> the medians the report shows."""
    best_rows = []
    for rows in runs:
        met = [r for r in rows if r.endpoint == ALL and r.slo_met]
        best_rows.append(max(met, key=lambda r: r.rps) if met else None)
    found = [b for b in best_rows if b is not None]
    by_users: dict[int, list[StepStats]] = defaultdict(list)
    endpoints: dict[tuple[int, str], list[StepStats]] = defaultdict(list)
    requests = failures = 0
    for rows in runs:
        for r in rows:
            if r.endpoint == ALL:
                by_users[r.users].append(r)
                requests, failures = requests + r.requests, failures + r.failures
            else:
                endpoints[(r.users, r.endpoint)].append(r)
    curve = [
        {
            "users": u,
            "rps": _median(r.rps for r in rs),
            "p50_ms": _median(r.p50_ms for r in rs),
            "p95_ms": _median(r.p95_ms for r in rs),
            "p99_ms": _median(r.p99_ms for r in rs),
            "error_rate": _median(r.error_rate for r in rs),
            "met": sum(r.slo_met for r in rs),
            "runs": len(rs),
        }
        for u, rs in sorted(by_users.items())
    ]
    low = min(by_users) if by_users else None
    at_low = {
        name: {
            "users": u,
            "p50_ms": _median(r.p50_ms for r in rs),
            "p99_ms": _median(r.p99_ms for r in rs),
            "model_p50_ms": _median(r.model_p50_ms for r in rs),
            "overhead_p50_ms": _median(r.overhead_p50_ms for r in rs),
            "app_overhead_p50_ms": _median(getattr(r, "app_overhead_p50_ms", math.nan) for r in rs),
            "transport_p50_ms": _median(getattr(r, "transport_p50_ms", math.nan) for r in rs),
            "rps": _median(r.rps for r in rs),
        }
        for (u, name), rs in sorted(endpoints.items())
        if u == low
    }
    return {
        "runs": len(runs),
        "runs_meeting_objective": len(found),
        "best_rps": _median(b.rps if b else 0.0 for b in best_rows) if runs else math.nan,
        # the most it answered at any latency: a bound when it never met the objective
        "max_rps_any": _median(max((r.rps for r in rows if r.endpoint == ALL), default=0.0) for rows in runs),
        "best_users": _median(b.users for b in found) if found else math.nan,
        "at_best": {k: _median(getattr(b, k) for b in found) for k in ("p50_ms", "p95_ms", "p99_ms", "error_rate")},
        "error_rate_all_steps": failures / requests if requests else math.nan,
        "curve": curve,
        "endpoints_low_load": at_low,
    }


def summarise_fixed(runs: list[list[StepStats]]) -> dict[str, Any]:
    rows = [r for run in runs for r in run if r.endpoint == ALL]
    if not rows:
        return {}
    return {
        "runs": len(rows),
        "users": rows[0].users,
        **{k: _median(getattr(r, k) for r in rows) for k in ("rps", "p50_ms", "p95_ms", "p99_ms", "error_rate")},
    }


def _direct(rows: list[dict[str, Any]], model: str, concurrency: int = 1) -> dict[str, Any] | None:
    return next((r for r in rows if r["model"] == model and int(r["concurrency"]) == concurrency), None)


def summarise(raw: Path) -> dict[str, Any]:
    """Everything the report and the README section show, from one raw run directory."""
    meta = json.loads((raw / "meta.json").read_text()) if (raw / "meta.json").is_file() else {}
    load = {name: summarise_series(_runs(raw / "load" / name)) for name in SYSTEMS}
    load = {k: v | {"load_generator_cpu": _load_gen_cpu(raw / "load" / k)} for k, v in load.items() if v["runs"]}
    fixed = {name: summarise_fixed(_runs(raw / "fixed" / name)) for name in ("batching_on", "batching_off")}
    fixed = {k: v for k, v in fixed.items() if v}
    direct = _read_csv(raw / "triton_direct.csv")
    micro = {name: _read_csv(raw / "micro" / f"{name}.csv") for name in ("din", "bert", "faiss")}
    quality_path = raw / "micro" / "bert_quality.json"
    micro["bert_quality"] = json.loads(quality_path.read_text()) if quality_path.is_file() else {}
    latency = summarise_series(_runs(raw / "latency" / "endpoints"))
    bound_path = raw / "bound.json"
    bound = json.loads(bound_path.read_text()) if bound_path.is_file() else {}
    summary = {"meta": meta, "load": load, "fixed": fixed, "triton_direct": direct, "micro": micro, "bound": bound}
    summary["latency"] = latency["endpoints_low_load"] if latency["runs"] else {}
    summary["overhead"] = overhead(summary)
    summary["goals"] = goals(summary, float(meta.get("slo_p99_ms", 50.0)))
    return summary


def overhead(s: dict[str, Any]) -> dict[str, Any]:
    """Gateway time over model time, p50 at the lowest load (1 user / concurrency 1).

    over_triton: gateway-over-Triton latency minus Triton alone for the same model calls (intent: BERT;
    recommend: user tower + DIN; FAISS search and feature lookup count as gateway work).
    in_band: the embedded gateway's own account, latency minus the model and index stages in timings_ms."""
    out: dict[str, Any] = {"over_triton": {}, "in_band": {}}
    direct = s.get("triton_direct") or []
    tri = s["load"].get("gateway_triton", {}).get("endpoints_low_load", {})
    calls = {"intent": ("intent_bert",), "recommend": ("user_tower", "din")}
    for endpoint, models in calls.items():
        rows = [_direct(direct, m) for m in models]
        if endpoint in tri and all(rows):
            model_ms = sum(float(r["p50_ms"]) for r in rows if r)
            out["over_triton"][endpoint] = {
                "gateway_p50_ms": tri[endpoint]["p50_ms"],
                "triton_alone_p50_ms": model_ms,
                "overhead_ms": tri[endpoint]["p50_ms"] - model_ms,
            }
    emb = s["load"].get("gateway_embedded", {}).get("endpoints_low_load", {})
    for endpoint, row in emb.items():
        out["in_band"][endpoint] = {
            "latency_p50_ms": row["p50_ms"],
            "model_p50_ms": row["model_p50_ms"],
            "overhead_ms": row["overhead_p50_ms"],
            "app_overhead_ms": row.get("app_overhead_p50_ms", math.nan),
            "transport_ms": row.get("transport_p50_ms", math.nan),
        }
    return out


def goals(s: dict[str, Any], slo: float) -> dict[str, dict[str, Any]]:
    """Each goal of the issue with its measured value and whether it was met (None: not measured)."""
    out: dict[str, dict[str, Any]] = {}
    naive, emb = s["load"].get("naive"), s["load"].get("gateway_embedded")
    if naive and emb:
        n, e = naive["best_rps"], emb["best_rps"]
        if n > 0:
            ratio, text = e / n, f"{_x(e / n)} ({_f(e, 0)} vs {_f(n, 0)} req/s)"
        else:  # never met: compare with the most it answered at any latency, a lower bound of the true ratio
            n_any = naive["max_rps_any"]
            ratio = e / n_any if n_any > 0 else math.nan
            text = (
                f"the naive peer met p99 <= {slo:.0f} ms at no load; the gateway's {_f(e, 0)} req/s at the objective "
                f"is {_x(ratio)} the most the naive peer answered at any latency ({_f(n_any, 0)} req/s)"
            )
        out["throughput"] = {
            "measured": ratio,
            "text": text,
            "met": bool(ratio >= 3) if not math.isnan(ratio) else None,
        }
    bound = (s.get("bound") or {}).get("bound_rps")
    if emb and bound:
        eff = emb["best_rps"] / bound
        out["efficiency"] = {
            "measured": eff,
            "text": f"{100 * eff:.0f} % ({_f(emb['best_rps'], 0)} of {_f(bound, 0)} req/s)",
            "met": bool(eff >= 0.8),
        }
    ib = s.get("overhead", {}).get("in_band")
    if ib:
        worst = max(v["overhead_ms"] for v in ib.values())
        parts = ", ".join(f"{k} {_f(v['overhead_ms'], 2)} ms{_split(v)}" for k, v in ib.items())
        out["overhead_embedded"] = {"measured": worst, "text": parts, "met": bool(worst <= 0.5)}
    # Per endpoint: in the mixed load the p50 is mostly recommend's and the p99 mostly intent's, so their ratio
    # measures how different the endpoints are, not how steady any one of them is (kept in the text).
    lat = {k: v for k, v in (s.get("latency") or {}).items() if v.get("p50_ms", 0) > 0}
    one = next((c for c in (emb or {}).get("curve", []) if c["users"] == 1), None)
    if lat:
        ratios = {k: v["p99_ms"] / v["p50_ms"] for k, v in lat.items()}
        worst = max(ratios, key=ratios.__getitem__)
        text = ", ".join(f"{k} {_x(r)}" for k, r in ratios.items())
        text += f"; worst {worst} (p50 {_f(lat[worst]['p50_ms'], 2)} ms, p99 {_f(lat[worst]['p99_ms'], 2)} ms)"
        if one and one["p50_ms"] > 0:
            text += f"; the mixed load at 1 user: {_x(one['p99_ms'] / one['p50_ms'])}"
        out["tail"] = {"measured": ratios[worst], "text": text, "met": bool(ratios[worst] <= 2)}
    elif one and one["p50_ms"] > 0:  # no per-endpoint phase in this run: the mixed load's figure
        ratio = one["p99_ms"] / one["p50_ms"]
        text = f"{_x(ratio)} (mixed load; p50 {_f(one['p50_ms'], 2)} ms, p99 {_f(one['p99_ms'], 2)} ms)"
        out["tail"] = {"measured": ratio, "text": text, "met": bool(ratio <= 2)}
    on, off = s["fixed"].get("batching_on"), s["fixed"].get("batching_off")
    if on and off:
        ratio = on["rps"] / off["rps"] if off["rps"] > 0 else math.nan
        out["batching"] = {
            "measured": ratio,
            "text": f"{_x(ratio)} ({_f(on['rps'], 0)} vs {_f(off['rps'], 0)} req/s at {on['users']} users)",
            "met": bool(ratio >= 1.5) if not math.isnan(ratio) else None,
        }
    ot = s["overhead"]["over_triton"]
    if ot:
        worst = max(v["overhead_ms"] for v in ot.values())
        parts = ", ".join(f"{k} {_f(v['overhead_ms'], 2)} ms" for k, v in ot.items())
        out["overhead"] = {"measured": worst, "text": f"{parts} (over Triton alone)", "met": bool(worst <= 1.0)}
    faiss = [r for r in s["micro"].get("faiss", []) if r.get("index") != "flat" and float(r["recall"]) >= 0.95]
    if s["micro"].get("faiss"):
        best = max(faiss, key=lambda r: float(r["speedup_single"])) if faiss else None
        items = int(s["micro"]["faiss"][0]["items"])
        if best:
            text = (
                f"{best['index']} {best['setting']}: recall {_f(best['recall'], 3)} at {_x(best['speedup_single'])} "
                f"(one query per call), {_x(best['speedup_batch'])} (batched), {items:,} items"
            )
            met = float(best["speedup_single"]) >= 5 and items >= 1_000_000
            out["faiss"] = {"measured": float(best["speedup_single"]), "text": text, "met": met}
        else:
            out["faiss"] = {"measured": math.nan, "text": "no approximate index reached recall 0.95", "met": False}
    for k, v in out.items():
        v["goal"] = goal_text(k, slo)
    return out


def goal_text(key: str, slo: float) -> str:
    return GOALS[key].replace("SLO", f"{slo:.0f} ms")


# ---------------------------------------------------------------------------------------------------------
# Formatting


def _f(x: Any, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{float(x):,.{nd}f}"


def _x(ratio: Any) -> str:
    return "∞" if isinstance(ratio, float) and math.isinf(ratio) else f"{_f(ratio, 2)}x"


def _pct(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.2f} %"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _met(v: Any) -> str:
    return "yes" if v is True else "no" if v is False else "not measured"


def goals_table(s: dict[str, Any]) -> str:
    g, slo = s["goals"], float(s["meta"].get("slo_p99_ms", 50.0))
    rows = [
        (g[k]["goal"], g[k]["text"], _met(g[k]["met"])) if k in g else (goal_text(k, slo), "not measured", "–")
        for k in GOALS
    ]
    return md_table(("goal (this 2-core machine)", "measured", "met"), rows)


def load_table(s: dict[str, Any], slo: float) -> str:
    rows = []
    for name, label in SYSTEMS.items():
        x = s["load"].get(name)
        if not x:
            continue
        b = x["at_best"]
        shown = x["best_rps"] > 0  # a median of 0: most runs met the objective at no load, no latency to show
        rows.append(
            (
                label,
                _f(x["best_rps"], 0),
                _f(x["best_users"], 0) if shown else "–",
                *((_f(b["p50_ms"]), _f(b["p95_ms"]), _f(b["p99_ms"]), _pct(b["error_rate"])) if shown else ("–",) * 4),
                f"{x['runs_meeting_objective']}/{x['runs']}",
                _pct(x.get("load_generator_cpu")),
            )
        )
    headers = (
        "system",
        f"max req/s at p99 <= {slo:.0f} ms",
        "users",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "runs meeting it",
        "load generator CPU (max)",
    )
    return md_table(headers, rows)


def _curve_row(c: dict[str, Any]) -> tuple[Any, ...]:
    latency = (_f(c["p50_ms"]), _f(c["p95_ms"]), _f(c["p99_ms"]))
    return (c["users"], _f(c["rps"], 0), *latency, _pct(c["error_rate"]), f"{c['met']}/{c['runs']}")


def curve_tables(s: dict[str, Any]) -> str:
    out = []
    for name, label in SYSTEMS.items():
        x = s["load"].get(name)
        if not x:
            continue
        rows = [_curve_row(c) for c in x["curve"]]
        headers = ("users", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "met")
        out.append(f"**{label}**\n\n" + md_table(headers, rows))
    return "\n\n".join(out)


def render_markdown(s: dict[str, Any], plots: dict[str, str]) -> str:
    m = s["meta"]
    slo = float(m.get("slo_p99_ms", 50.0))
    mach = m.get("machine", {})
    prof = m.get("profile", {})
    mix = next((v for v in _mixes(s)), "recommend 70 %, intent 20 %, forecast 10 %")
    lines = [
        f"# Benchmark: {m.get('machine_name', 'machine')}, {m.get('started', '')[:10]}",
        "",
        f"Command: `make bench PROFILE={prof.get('name', '?')}` = `{m.get('command', 'python -m bench')}` "
        f"(git {m.get('git', {}).get('commit', '?')}{' + local changes' if m.get('git', {}).get('dirty') else ''}), "
        f"{m.get('started', '?')} to {m.get('finished', '?')}.",
        f"Machine: {mach.get('cpu', '?')}, {mach.get('cpus', '?')} CPUs, {mach.get('memory', '?')} RAM, "
        f"GPU: {mach.get('gpu', 'none')}; device `{m.get('device', 'cpu')}`. Servers pinned to core(s) "
        f"{m.get('server_cores', '?')}, the load generator to core(s) {m.get('load_cores', '?')} (`taskset`).",
        f"Each figure is the median of {m.get('repeats', '?')} runs after a discarded warm-up run; in every step "
        f"the first {_f(prof.get('warmup_s'), 1)} s are left out. Traffic: {mix}, closed-loop users without "
        "think time, every answer validated.",
        "",
        "## Goals",
        "",
        goals_table(s),
        "",
    ]
    if m.get("errors"):
        lines += ["Parts that failed in this run: " + "; ".join(f"{k}: {v}" for k, v in m["errors"].items()), ""]
    lines += [
        f"## Load test: highest throughput with p99 <= {slo:.0f} ms",
        "",
        f"Step load {', '.join(map(str, prof.get('steps', [])))} users, {_f(prof.get('step_s'), 0)} s per step, "
        "stopping after the first step that misses the objective.",
        "",
        load_table(s, slo),
        "",
        "Load generator CPU: the share of its core locust used (near 100 % would make it, not the server, the limit).",
        "",
    ]
    if "latency" in plots:
        lines += [f"![p99 latency vs throughput]({plots['latency']})", ""]
    lines += ["Per step (median over runs):", "", curve_tables(s), ""]
    lines += latency_section(s) + bound_section(s) + batching_section(s) + overhead_section(s) + direct_section(s)
    lines += micro_sections(s, plots)
    lines += setup_section(s)
    return "\n".join(lines).rstrip() + "\n"


def _mixes(s: dict[str, Any]) -> Iterable[str]:
    for name in SYSTEMS:
        mix = (s["meta"].get("mix") or {}).get(name)
        if mix:
            yield ", ".join(f"{k} {v:g} %" for k, v in mix.items())


def _split(v: dict[str, Any]) -> str:
    """' (app a, transport t)' from the Server-Timing split, where the run has it."""
    app, transport = v.get("app_overhead_ms", math.nan), v.get("transport_ms", math.nan)
    if app is None or transport is None or math.isnan(app) or math.isnan(transport):
        return ""
    return f" (in the app {_f(app, 2)}, transport {_f(transport, 2)})"


def latency_section(s: dict[str, Any]) -> list[str]:
    lat = s.get("latency") or {}
    head = ["## Latency per endpoint at one user (gateway, embedded)", ""]
    if not lat:
        return [*head, "Not measured in this run.", ""]
    rows = [
        (
            k,
            _f(v["p50_ms"], 2),
            _f(v["p99_ms"], 2),
            _f(v["model_p50_ms"], 2),
            _f(v["overhead_p50_ms"], 2),
            _f(v.get("app_overhead_p50_ms", math.nan), 2),
            _f(v.get("transport_p50_ms", math.nan), 2),
        )
        for k, v in lat.items()
    ]
    cols = (
        "endpoint",
        "p50 ms",
        "p99 ms",
        "model + index stages p50 ms",
        "outside them p50 ms",
        "of which in the app",
        "of which transport",
    )
    return [
        *head,
        "One closed-loop user sending recommend, intent, forecast and price requests in equal shares. The time "
        "outside the model and index stages is split by the answers' `server-timing: app;dur=` header: in the app "
        "(the gateway's own code: features, validation, answer building, middleware) and transport (the rest of "
        "the client's latency: uvicorn's loop and HTTP parsing, the kernel's loopback, and the load generator "
        "itself); each column is its own p50, so they need not add up.",
        "",
        md_table(cols, rows),
        "",
    ]


def bound_section(s: dict[str, Any]) -> list[str]:
    b = s.get("bound") or {}
    head = ["## The compute bound: the models', index's and tokenizer's own time", ""]
    if not b.get("endpoints"):
        return [*head, "Not measured in this run.", ""]
    rows = [
        (name, _f(e["mean_ms"], 3), _f(e["p50_ms"], 3), _f(e["rps_one_core"], 0), e["requests"])
        for name, e in b["endpoints"].items()
    ]
    emb = s["load"].get("gateway_embedded", {}).get("best_rps")
    mix = ", ".join(f"{k} {v:g}" for k, v in (b.get("mix") or {}).items())
    lines = [
        *head,
        f"`python -m bench.bound` on the load test's request bodies, one request at a time on {b.get('threads', 1)} "
        f"thread(s), no server: user tower + FAISS + DIN per recommendation, tokenizer + "
        f"{b.get('intent_model', 'BERT')} per message, the TCN per forecast. Features are built untimed with the "
        "gateway's own code.",
        "",
        md_table(("endpoint", "mean ms per request", "p50 ms", "req/s on one core", "request bodies"), rows),
        "",
    ]
    if b.get("bound_rps"):
        eff = (
            f"; the gateway's {_f(emb, 0)} req/s at the objective is {100 * emb / b['bound_rps']:.0f} % of it"
            if emb
            else ""
        )
        lines += [f"Bound of the mix ({mix}): **{_f(b['bound_rps'], 0)} req/s** on one core{eff}.", ""]
    return lines


def batching_section(s: dict[str, Any]) -> list[str]:
    on, off = s["fixed"].get("batching_on"), s["fixed"].get("batching_off")
    if not (on and off):
        return ["## Micro-batching on vs off", "", "Not measured in this run.", ""]
    rows = [
        (name, _f(x["rps"], 0), _f(x["p50_ms"]), _f(x["p95_ms"]), _f(x["p99_ms"]), _pct(x["error_rate"]))
        for name, x in (("on (SERVING_BATCHING=true)", on), ("off (SERVING_BATCHING=false)", off))
    ]
    ratio = on["rps"] / off["rps"] if off["rps"] else math.nan
    return [
        f"## Micro-batching on vs off ({on['users']} users, {_fixed_mix(s)}, gateway with embedded backend)",
        "",
        md_table(("micro-batching", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"), rows),
        "",
        f"Throughput ratio on/off: {_x(ratio)}.",
        "",
    ]


def _fixed_mix(s: dict[str, Any]) -> str:
    mix = (s["meta"].get("mix") or {}).get("batching_on") or {}
    return ", ".join(f"{k} {v:g} %" for k, v in mix.items()) or "storefront mix"


def overhead_section(s: dict[str, Any]) -> list[str]:
    o = s["overhead"]
    lines = ["## Gateway overhead over the models' own time (p50, 1 user / concurrency 1)", ""]
    if o["over_triton"]:
        rows = [
            (k, _f(v["gateway_p50_ms"], 2), _f(v["triton_alone_p50_ms"], 2), _f(v["overhead_ms"], 2))
            for k, v in o["over_triton"].items()
        ]
        lines += [
            md_table(("endpoint", "gateway over Triton", "Triton alone (same calls)", "overhead ms"), rows),
            "",
            "Triton alone: intent = one BERT call; recommend = user tower + DIN (200 rows). Feature lookup, FAISS "
            "search, validation and JSON count as gateway time.",
            "",
        ]
    if o["in_band"]:
        rows = [
            (k, _f(v["latency_p50_ms"], 2), _f(v["model_p50_ms"], 2), _f(v["overhead_ms"], 2))
            for k, v in o["in_band"].items()
        ]
        lines += [
            "Embedded backend, from the answers' `timings_ms` (model and index stages vs client latency):",
            "",
            md_table(("endpoint", "client latency", "model + index stages", "overhead ms (p50 per request)"), rows),
            "",
        ]
    if not (o["over_triton"] or o["in_band"]):
        lines += ["Not measured in this run.", ""]
    return lines


def direct_section(s: dict[str, Any]) -> list[str]:
    rows = s.get("triton_direct") or []
    if not rows:
        return []
    tool = rows[0]["tool"]
    why = (
        "Measured with a small asyncio tritonclient gRPC client (bench/triton_direct.py): NVIDIA's perf_analyzer "
        "binary was not available (the PyPI package `perf-analyzer` 0.1.0 is a placeholder without the binary, "
        "which ships in Triton's SDK image)."
        if tool == "tritonclient"
        else "Measured with perf_analyzer."
    )
    table = md_table(
        ("model", "concurrency", "rows/request", "req/s", "rows/s", "p50 ms", "p95 ms", "p99 ms"),
        (
            (
                r["model"],
                int(r["concurrency"]),
                int(r["rows"]),
                _f(r["rps"], 0),
                _f(r["rows_per_s"], 0),
                _f(r["p50_ms"], 2),
                _f(r["p95_ms"], 2),
                _f(r["p99_ms"], 2),
            )
            for r in rows
        ),
    )
    return ["## Triton alone (model time without the gateway)", "", why, "", table, ""]


def micro_sections(s: dict[str, Any], plots: dict[str, str]) -> list[str]:
    micro = s["micro"]
    lines: list[str] = []
    if micro.get("faiss"):
        f0 = micro["faiss"][0]
        lines += [
            f"## FAISS: recall@{int(f0['k'])} vs queries/s ({int(f0['items']):,} items, {int(f0['dim'])}-d)",
            "",
            f"Data: {f0.get('data') or 'synthetic clustered vectors; queries: noisy item vectors'}. One thread; "
            "exact search (flat) is the ground truth; built and measured with export/retrieval.py.",
            "",
            md_table(
                ("index", "setting", "recall", "q/s one at a time", "q/s batched", "speed-up (single)", "build s"),
                (
                    (
                        r["index"],
                        r["setting"],
                        _f(r["recall"], 4),
                        _f(r["single_qps"], 0),
                        _f(r["batch_qps"], 0),
                        _x(r["speedup_single"]),
                        _f(r["build_s"], 1),
                    )
                    for r in micro["faiss"]
                ),
            ),
            "",
        ]
        if "faiss" in plots:
            lines += [f"![FAISS recall vs speed]({plots['faiss']})", ""]
    if micro.get("din"):
        lines += [
            "## DIN rows/s by batch size (ONNX Runtime, one thread)",
            "",
            md_table(
                ("rows per call", "history length", "ms per call", "rows/s"),
                (
                    (int(r["batch"]), int(r["hist_len"]), _f(r["p50_ms"], 3), _f(r["rows_per_s"], 0))
                    for r in micro["din"]
                ),
            ),
            "",
        ]
        peak = max(micro["din"], key=lambda r: float(r["rows_per_s"]))
        cfg = (s["meta"].get("batching") or {}).get("din", {})
        note = f"Rows/s peak at {int(peak['batch'])} rows per call"
        if cfg:
            note += (
                f"; the served DIN config lets batches grow to {cfg['max_batch_size']} rows "
                f"(preferred {cfg.get('preferred') or '–'}, delay {cfg.get('max_queue_delay_us')} µs)"
            )
        lines += [note + ".", ""]
        if "din" in plots:
            lines += [f"![DIN rows per second]({plots['din']})", ""]
    if micro.get("bert"):
        q = micro.get("bert_quality") or {}
        qual = [f"{q.get('texts', '?')} texts ({q.get('source', '')})"]
        if "top1_agreement" in q:
            qual.append(f"top-1 agreement fp32/int8 {_pct(q['top1_agreement'])}")
        for v in ("intent_bert", "intent_bert_int8"):
            if f"accuracy_{v}" in q:
                qual.append(f"accuracy {v} {_pct(q[f'accuracy_{v}'])}")
        lines += [
            "## BERT intent: fp32 vs int8 (ONNX Runtime, one thread)",
            "",
            md_table(
                ("model", "precision", "batch", "tokens", "ms per call", "texts/s", "file MB"),
                (
                    (
                        r["model"],
                        r["precision"],
                        int(r["batch"]),
                        int(r["tokens"]),
                        _f(r["p50_ms"], 2),
                        _f(r["texts_per_s"], 0),
                        _f(r["size_mb"], 1),
                    )
                    for r in micro["bert"]
                ),
            ),
            "",
            "Quality: " + "; ".join(qual) + ".",
            "",
        ]
        if "bert" in plots:
            lines += [f"![BERT fp32 vs int8]({plots['bert']})", ""]
    return lines


def setup_section(s: dict[str, Any]) -> list[str]:
    m = s["meta"]
    lines = ["## Set-up", ""]
    man = m.get("manifest", {})
    r = man.get("retrieval", {})
    if r:
        lines += [
            f"Served catalogue: {r.get('item_count')} items, {r.get('embedding_dim')}-d embeddings, "
            f"FAISS {r.get('index_type')} {r.get('index_params')}.",
            "",
        ]
    if m.get("dropped"):
        dropped = "; ".join(
            f"{name}: {', '.join(f'{k} ({v})' for k, v in d.items())}" for name, d in m["dropped"].items()
        )
        lines += [f"Endpoints left out of the mix: {dropped}.", ""]
    if m.get("batching"):
        cfgs = "; ".join(
            f"{k}: max {v['max_batch_size']}, delay {v.get('max_queue_delay_us')} µs" for k, v in m["batching"].items()
        )
        lines += [f"Batching settings (config.pbtxt, used by the gateway's micro-batcher and Triton): {cfgs}.", ""]
    if m.get("triton_server"):
        lines += [f"Triton: {m['triton_server']} (nvidia-pytriton's tritonserver, Python-backend view).", ""]
    if m.get("versions"):
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", ""]
    if m.get("model_sizes"):
        lines += ["Model sizes (MB): " + ", ".join(f"{k} {v}" for k, v in m["model_sizes"].items()) + ".", ""]
    if m.get("load"):
        samples = ", ".join(f"{x['phase']} {x['loadavg'][0]:.2f}" for x in m["load"])
        lines += [
            f"Machine load (1-min load average; {m.get('machine', {}).get('cpus', '?')} CPUs) when each part "
            f"started: {samples}. Anything above the benchmark's own use means other work shared the CPUs.",
            "",
        ]
    if m.get("commands"):
        lines += ["Command lines:", "", "```"]
        lines += [f"# {k}\n{v}" for k, v in m["commands"].items()]
        lines += ["```", ""]
    return lines


# ---------------------------------------------------------------------------------------------------------
# Plots


def make_plots(s: dict[str, Any], out_dir: Path, stem: str) -> dict[str, str]:
    """PNG files next to the markdown; returns {plot: file name} for those drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    slo = float(s["meta"].get("slo_p99_ms", 50.0))

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / f"{stem}-{name}.png", dpi=110)
        plt.close(fig)
        out[name] = f"{stem}-{name}.png"

    if s["load"]:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, label in SYSTEMS.items():
            x = s["load"].get(name)
            if not x or not x["curve"]:
                continue
            rps, p99 = [c["rps"] for c in x["curve"]], [c["p99_ms"] for c in x["curve"]]
            line = ax.plot(rps, p99, marker="o", label=label)[0]
            for c in x["curve"]:  # the user count at each step, so the curve reads as a load ramp
                ax.annotate(
                    str(c["users"]), (c["rps"], c["p99_ms"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
            ax.plot(rps, [c["p50_ms"] for c in x["curve"]], ls="--", color=line.get_color(), alpha=0.6)
        ax.axhline(slo, color="grey", ls=":", label=f"objective p99 <= {slo:.0f} ms")
        ax.set(xlabel="throughput (req/s)", ylabel="latency (ms); solid p99, dashed p50")
        ax.set_ylim(bottom=0)
        ax.set_title("Storefront mix: latency vs throughput (step load; labels = users)")
        ax.legend(fontsize=8)
        save(fig, "latency")
    faiss = s["micro"].get("faiss") or []
    if faiss:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for kind in dict.fromkeys(r["index"] for r in faiss):
            rows = [r for r in faiss if r["index"] == kind]
            ax.plot([float(r["single_qps"]) for r in rows], [float(r["recall"]) for r in rows], marker="o", label=kind)
        ax.axhline(0.95, color="grey", ls=":", label="recall 0.95")
        ax.set(xscale="log", xlabel="queries/s, one query per call (1 thread)", ylabel=f"recall@{int(faiss[0]['k'])}")
        ax.set_title(f"FAISS on {int(faiss[0]['items']):,} items")
        ax.legend(fontsize=8)
        save(fig, "faiss")
    din = s["micro"].get("din") or []
    if din:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        ax.plot([int(r["batch"]) for r in din], [float(r["rows_per_s"]) for r in din], marker="o")
        ax.set(xscale="log", yscale="log", xlabel="rows per call", ylabel="rows/s (1 thread)")
        ax.set_title("DIN throughput by batch size (ONNX Runtime)")
        save(fig, "din")
    bert = s["micro"].get("bert") or []
    if bert:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        batches = sorted({int(r["batch"]) for r in bert})
        width = 0.8 / max(len({r["model"] for r in bert}), 1)
        for i, model in enumerate(dict.fromkeys(r["model"] for r in bert)):
            vals = {int(r["batch"]): float(r["texts_per_s"]) for r in bert if r["model"] == model}
            ax.bar([j + i * width for j in range(len(batches))], [vals.get(b, 0) for b in batches], width, label=model)
        ax.set_xticks([j + width / 2 for j in range(len(batches))], [f"batch {b}" for b in batches])
        ax.set(ylabel="texts/s (1 thread)")
        ax.set_title("BERT intent: fp32 vs int8")
        ax.legend(fontsize=8)
        save(fig, "bert")
    return out


# ---------------------------------------------------------------------------------------------------------
# Writing


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def write_report(raw: Path, results: Path, stem: str | None = None) -> Path:
    """Summary JSON, markdown and plots of one raw run into `results`; returns the markdown path."""
    s = summarise(raw)
    m = s["meta"]
    stem = stem or f"{m.get('machine_name', 'machine')}-{str(m.get('started', ''))[:10] or 'undated'}"
    results.mkdir(parents=True, exist_ok=True)
    plots = make_plots(s, results, stem)
    md = results / f"{stem}.md"
    md.write_text(render_markdown(s, plots))
    body = {"stem": stem, "markdown": md.name, "plots": plots, **s}
    (results / f"{stem}.json").write_text(json.dumps(_jsonable(body), indent=1, default=str) + "\n")
    return md


def newest_result(results: Path) -> Path | None:
    """The summary JSON of the most recent run in `results` (by its finish time)."""
    found = []
    for p in results.glob("*.json"):
        try:
            body = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(body, dict) and "goals" in body and "meta" in body:
            found.append((str(body["meta"].get("finished") or body["meta"].get("started") or ""), p))
    return max(found)[1] if found else None


def readme_section(body: dict[str, Any], link_dir: str = "bench/results") -> str:
    """The README's performance section (between the markers) from a summary JSON."""
    m = body["meta"]
    slo = float(m.get("slo_p99_ms", 50.0))
    mach = m.get("machine", {})
    prof = (m.get("profile") or {}).get("name", "quick")
    rows = []
    for name, label in SYSTEMS.items():
        x = body["load"].get(name)
        if x:
            b, shown = x["at_best"], x["best_rps"] > 0
            latency = (_f(b["p50_ms"]), _f(b["p99_ms"]), _pct(b["error_rate"])) if shown else ("–", "–", "–")
            rows.append((label, _f(x["best_rps"], 0), *latency))
    lines = [
        START,
        f"Measured with `make bench PROFILE={prof}` on {mach.get('cpu', '?')} ({mach.get('cpus', '?')} CPUs, "
        f"GPU: {mach.get('gpu', 'none')}), {str(m.get('started', ''))[:10]}: servers on core(s) "
        f"{m.get('server_cores', '?')}, load generator on core(s) {m.get('load_cores', '?')}, medians of "
        f"{m.get('repeats', '?')} runs. Full report with every command line, versions and the machine load: "
        f"[{link_dir}/{body['markdown']}]({link_dir}/{body['markdown']}).",
        "",
        md_table(("system (storefront mix)", f"max req/s at p99 <= {slo:.0f} ms", "p50 ms", "p99 ms", "errors"), rows),
        "",
        goals_table(body),
        "",
    ]
    if "latency" in body.get("plots", {}):
        lines += [f"![latency vs throughput]({link_dir}/{body['plots']['latency']})", ""]
    lines.append(END)
    return "\n".join(lines)


def update_readme(readme: Path, results: Path) -> Path:
    """Replace the text between the BENCH markers of `readme` with the newest result's section."""
    newest = newest_result(results)
    if newest is None:
        raise FileNotFoundError(f"no benchmark result in {results}; run `make bench` first")
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} markers to fill")
    body = json.loads(newest.read_text())
    base, res = readme.resolve().parent, results.resolve()
    rel = res.relative_to(base) if res.is_relative_to(base) else res
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + readme_section(body, str(rel)) + tail)
    return newest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("--raw", type=Path, help="a raw run directory (bench/results/raw/<time>)")
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--readme", type=Path, help="README to update from the newest result")
    ns = p.parse_args(argv)
    if ns.raw:
        print(write_report(ns.raw, ns.results))
    if ns.readme:
        print(f"{ns.readme}: performance section from {update_readme(ns.readme, ns.results)}")
    if not (ns.raw or ns.readme):
        p.error("give --raw and/or --readme")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
