"""The GPU run's report: <results>/<stem>.md, .json and .png (retrieval and training speed), in the CPU
report's manner: the goals table first, then each step's figures, every command named."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.report import format_table

GOAL_RPS, GOAL_P99_MS = 2000.0, 10.0
GOAL_DIN_ROWS, GOAL_BERT_TEXTS, GOAL_RETRIEVAL_MS = 1e6, 5000.0, 5.0


def _f(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def _best_rate(parity: list[dict[str, Any]] | None, model: str) -> tuple[float, str]:
    best, where = math.nan, ""
    for row in parity or []:
        if row["model"] != model:
            continue
        for precision in ("fp32", "fp16"):
            case = row.get(precision) or {}
            for key, value in case.items():
                if key.startswith("rows_per_s") and case.get("ok") and not value <= best:
                    best, where = float(value), f"{precision}, {case.get('provider')}"
    return best, where


def goals(results: Mapping[str, Any], dry_run: bool = False) -> list[dict[str, str]]:
    """The issue's GPU goals; a dry run's figures are the CPU's at toy sizes, so nothing is judged there."""
    rows = []
    gw = results.get("gateway") or {}
    curve = ((gw.get("load") or {}).get("gateway_embedded") or {}).get("curve", [])
    fast = [c for c in curve if c["p99_ms"] <= GOAL_P99_MS]
    top = max(fast, key=lambda c: c["rps"]) if fast else None
    text = f"{_f(top['rps'], 0)} req/s at p99 {_f(top['p99_ms'], 2)} ms, storefront mix" if top else "n/a"
    met = top is not None and top["rps"] >= GOAL_RPS
    rows.append(
        {
            "goal": f"gateway p99 <= {GOAL_P99_MS:g} ms at >= {GOAL_RPS:,.0f} req/s",
            "measured": text,
            "met": _yes(met, top),
        }
    )
    for model, goal, unit in (
        ("din", GOAL_DIN_ROWS, "rows/s at batch 1024"),
        ("intent_bert", GOAL_BERT_TEXTS, "texts/s at batch 64"),
    ):
        rate, where = _best_rate(results.get("parity"), model)
        rows.append(
            {
                "goal": f"{model} >= {goal:,.0f} {unit}",
                "measured": f"{_f(rate, 0)} ({where})" if where else "n/a",
                "met": _yes(rate >= goal, rate if where else None),
            }
        )
    exact = [r for r in results.get("retrieval") or [] if r["method"] == "exact top-k"]
    big = max(exact, key=lambda r: r["items"]) if exact else None
    text = (
        f"{_f(big['ms_per_batch'], 2)} ms per batch of {big['batch']}, {big['items']:,} items ({big['device']})"
        if big
        else "n/a"
    )
    met = big is not None and big["items"] >= 10_000_000 and big["ms_per_batch"] <= GOAL_RETRIEVAL_MS
    rows.append(
        {
            "goal": f"exact retrieval over 10M items <= {GOAL_RETRIEVAL_MS:g} ms per batch of 64",
            "measured": text,
            "met": _yes(met, big),
        }
    )
    fixed = gw.get("fixed") or {}
    on, off = (fixed.get("batching_on") or {}).get("rps"), (fixed.get("batching_off") or {}).get("rps")
    ratio = on / off if on and off else None
    rows.append(
        {
            "goal": "micro-batching pays (on / off at a fixed load)",
            "measured": f"{_f(ratio, 2)}x ({_f(on, 0)} vs {_f(off, 0)} req/s)" if ratio else "n/a",
            "met": _yes(ratio is not None and ratio > 1.0, ratio),
        }
    )
    if dry_run:
        rows = [{**r, "met": "not judged (dry run)"} for r in rows]
    return rows


def _yes(ok: bool, value: Any) -> str:
    return "n/a" if value is None else ("yes" if ok else "no")


def parity_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        cells = {"model": r["model"], "from": r["source"]}
        for precision in ("fp32", "fp16"):
            c = r.get(precision) or {}
            verdict = "ok" if c.get("ok") else "fails"
            err = _f(c.get("max_abs_err"), 6) if "max_abs_err" in c else c.get("error", "")[:90]
            cells[precision] = f"{verdict}: {err} (atol {c.get('atol', 'n/a')})" if c else "not run"
            rate = next((v for k, v in c.items() if k.startswith("rows_per_s")), None)
            cells[f"{precision} rows/s"] = _f(rate, 0) if rate else ""
        cells["provider"] = (r.get("fp32") or {}).get("provider", "")
        out.append(cells)
    return format_table(out)


def gateway_section(gw: Mapping[str, Any]) -> list[str]:
    lines = [f"`python {gw.get('command', '')}`", ""]
    rows = []
    for name, body in (gw.get("load") or {}).items():
        at = body.get("at_best") or {}
        rows.append(
            {
                "system": name,
                "max req/s at the objective": _f(body.get("best_rps"), 0),
                "p50 ms": _f(at.get("p50_ms"), 2),
                "p99 ms": _f(at.get("p99_ms"), 2),
                "errors": f"{(at.get('error_rate') or 0):.2%}",
            }
        )
    for name, body in (gw.get("fixed") or {}).items():
        rows.append(
            {
                "system": f"{name} ({body.get('users')} users)",
                "max req/s at the objective": _f(body.get("rps"), 0),
                "p50 ms": _f(body.get("p50_ms"), 2),
                "p99 ms": _f(body.get("p99_ms"), 2),
                "errors": f"{(body.get('error_rate') or 0):.2%}",
            }
        )
    lines.append(format_table(rows) if rows else "no load figures")
    if gw.get("errors"):
        lines += ["", f"Parts that failed: {gw['errors']}"]
    return lines


def retrieval_table(rows: list[dict[str, Any]]) -> str:
    keep = [
        {
            "method": r["method"] + (f" nprobe={r['nprobe']}" if "nprobe" in r else ""),
            "items": f"{r['items']:,}",
            "batch": r["batch"],
            "ms per batch": _f(r["ms_per_batch"], 3),
            "queries/s": _f(r["queries_per_s"], 0),
            "recall@200": f"{r['recall']:.3f}",
            "device": r.get("device", ""),
        }
        for r in rows
    ]
    return format_table(keep)


def training_section(tr: Mapping[str, Any]) -> list[str]:
    rows = []
    for r in tr.get("speed", []):
        rows.append(
            {
                "model": r["model"],
                "profile": r["profile"],
                "device": r["device"],
                "samples/s": _f(r.get("samples_per_s"), 0) if "error" not in r else "failed: " + r["error"][-120:],
                "samples": r.get("unit", ""),
                "epoch train s": _f(r.get("train_s"), 2),
                "run wall s": _f(r.get("wall_s"), 1),
            }
        )
    ddp = tr.get("ddp") or {}
    text = (
        f"DDP smoke run (`torchrun --standalone --nproc_per_node {ddp.get('processes')}`, {ddp.get('backend')}): "
        + (
            f"ok, world size {ddp.get('world_size')}, {_f(ddp.get('wall_s'))} s"
            if ddp.get("ok")
            else f"failed: {ddp.get('error', '')[-300:]}"
        )
    )
    return [format_table(rows), "", text]


def plot(results: Mapping[str, Any], path: Path) -> Path | None:
    ret, speed = results.get("retrieval") or [], (results.get("training") or {}).get("speed", [])
    if not ret and not speed:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for method in dict.fromkeys(r["method"] for r in ret):
        pts = sorted((r["items"], r["queries_per_s"]) for r in ret if r["method"] == method)
        a.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    a.set(xscale="log", yscale="log", xlabel="items", ylabel="queries/s (batches of 64)", title="retrieval")
    if ret:
        a.legend(fontsize=8)
    ok = [r for r in speed if "samples_per_s" in r]
    b.bar([r["model"] for r in ok], [r["samples_per_s"] for r in ok])
    b.set(yscale="log", ylabel="training samples/s (one epoch)", title="training speed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine_line(facts: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    gpu = f"{facts.get('gpu', 'no GPU')} x{facts.get('gpu_count', 0)}, {facts.get('cpus')} CPUs"
    cupy = "with a GPU" if facts.get("cupy") else "absent or without a GPU"
    providers = ", ".join(facts.get("ort_providers", []))
    pins = ", ".join(f"{k} {v}" for k, v in versions.items())
    return (
        f"Machine: {gpu}; ONNX Runtime providers {providers}; CuPy {cupy}; FAISS GPUs {facts.get('faiss_gpus')}. {pins}"
    )


def write_report(results: Mapping[str, Any], meta: Mapping[str, Any], out_dir: Path, stem: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = meta["facts"]
    title = (
        "Dry run on the CPU (tiny sizes: the figures mean nothing)"
        if meta["dry_run"]
        else f"GPU run: {facts.get('gpu', 'GPU')}"
    )
    lines = [
        f"# {title}, {meta['date']}",
        "",
        f"Command: `{meta['command']}` at commit {meta['git']['commit']}"
        + (" (uncommitted changes)" if meta["git"]["dirty"] else "")
        + f"; {_f(meta['seconds'].get('total'))} s in all.",
        "",
        machine_line(facts, meta["versions"]),
        "",
        "Seconds per step: " + ", ".join(f"{k} {v}" for k, v in meta["seconds"].items()),
        "",
    ]
    if meta["errors"]:
        lines += ["Failed steps:", "", *[f"- {k}: {v.splitlines()[0][:300]}" for k, v in meta["errors"].items()], ""]
    lines += ["## Goals", "", format_table(goals(results, meta["dry_run"])), ""]
    if results.get("parity"):
        lines += [
            "## Export parity (ONNX Runtime vs PyTorch, batches 1, 3, 64)",
            "",
            parity_table(results["parity"]),
            "",
        ]
    if results.get("gateway"):
        lines += ["## Gateway (embedded ONNX Runtime) vs the naive peer", "", *gateway_section(results["gateway"]), ""]
    if results.get("retrieval"):
        lines += ["## Retrieval: exact top-k (CuPy) vs FAISS on the CPU", "", retrieval_table(results["retrieval"]), ""]
    if results.get("training"):
        lines += ["## Training speed", "", *training_section(results["training"]), ""]
    if results.get("pytest"):
        lines += [
            "## pytest -m gpu",
            "",
            f"`{results['pytest']['command']}`: {results['pytest']['summary']} (exit {results['pytest']['exit']})",
            "",
        ]
    png = plot(results, out_dir / f"{stem}.png")
    if png:
        lines += [f"![retrieval and training speed]({png.name})", ""]
    md = out_dir / f"{stem}.md"
    md.write_text("\n".join(lines))
    (out_dir / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "results": results, "goals": goals(results, meta["dry_run"])}, indent=1, default=str)
    )
    return md


GPU_START, GPU_END = "<!-- GPU:START -->", "<!-- GPU:END -->"


def update_readme(readme: Path, md: Path, results: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """The README's GPU section (between the GPU markers): the goals table of this run and a link to its report."""
    text = readme.read_text()
    if GPU_START not in text or GPU_END not in text:
        raise ValueError(f"{readme} has no {GPU_START} ... {GPU_END} markers to fill")
    rel = (
        md.resolve().relative_to(readme.resolve().parent)
        if md.resolve().is_relative_to(readme.resolve().parent)
        else md
    )
    facts = meta["facts"]
    section = [
        GPU_START,
        f"Measured with `{meta['command']}` on {facts.get('gpu', 'a GPU')} ({facts.get('cpus')} CPUs), {meta['date']}; "
        f"full report: [{rel}]({rel}).",
        "",
        format_table(goals(results, meta["dry_run"])),
        "",
        GPU_END,
    ]
    head, rest = text.split(GPU_START, 1)
    readme.write_text(head + "\n".join(section) + rest.split(GPU_END, 1)[1])
