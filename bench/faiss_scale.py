"""FAISS at catalogue scale: memory, build time, recall@200 and queries/s of the index kinds at 1M-10M items.

    python -m bench.faiss_scale [--sizes 1000000,3000000,10000000] [--dim 64] [--kinds ivf_flat,ivf_pq,hnsw]
                                [--queries 200] [--single-queries 100] [--k 200] [--target 0.95]
                                [--lists-per-sqrt 1] [--train-per-list 256] [--max-build-s 300]
                                [--threads 0] [--search-threads 1] [--extrapolate 100000000]
                                [--out bench/results/faiss_scale-<machine>-<date>.md]

For each size: bench.micro's clustered synthetic vectors and noisy-item queries (the generator and seeds of
`python -m bench.micro --synthetic`, so the figures agree), the exact top-k of the sample queries by a chunked
brute-force scan (faiss.knn over 256k-item slices, merged), then each index kind with export/retrieval.py's
index types and parameters (choose_index; only nlist is the bench's, see --lists-per-sqrt):

- memory: bytes of the serialised index (what the gateway loads), beside export's layout estimate;
- build: train + add, wall seconds on --threads threads. On CPU the IVF kinds share one k-means of the coarse
  quantizer and one assignment of the items to its lists (the dominant cost on 2 cores); each kind's build
  time counts both in full, i.e. it is what building that kind alone takes;
- recall@k against exact on the sample, and queries/s one query per call (the gateway's path) and batched (the
  whole sample in one call) on --search-threads threads, at the cheapest nprobe / efSearch that reaches
  --target, else at the cheapest within 0.002 of the best one tried (the sweep stops once recall gains less
  than that a step).

HNSW is built only where the largest build so far (first a pilot on a slice), scaled by n log n, predicts at
most --max-build-s seconds; the report names what was skipped and the prediction (a small pilot underestimates:
caches). GPU: when faiss has GPU support and a GPU is present, every IVF kind is built with export's
build_index on the GPU (nothing shared: the GPU is fast) and searched on a GPU copy; HNSW has no GPU version.

Writes <out>.md, <out>.json and <out>.png (memory, build time and queries/s against catalogue size, log-log),
with a power law y = a n^b per kind and figure fitted over the measured sizes and evaluated at --extrapolate
items (an extrapolation, labelled so), and what export would choose there with its default memory budget.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from bench.__main__ import cpu_model, machine_slug
from bench.micro import clustered_vectors, search_settings, timed
from export import retrieval as r

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 262_144  # rows per slice of the scans: bounds the temporaries at 10M items
PLATEAU = 0.002  # recall gained per sweep step below which a kind that cannot reach the target stops
FIGURES = {
    "memory_mb": "index memory (MiB)",
    "build_s": "build time (s)",
    "single_qps": "queries/s, one per call",
    "batch_qps": "queries/s, batched",
}


def _log(msg: str) -> None:
    print(f"[faiss_scale] {msg}", flush=True)


def _bar(it: Iterable[int], desc: str, total: int) -> Iterable[int]:
    return tqdm(it, desc=desc, total=total, disable=None, leave=False, file=sys.stderr)  # None: quiet off a TTY


def _slices(n: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + CHUNK)) for s in range(0, n, CHUNK)]


# ---------------------------------------------------------------------------------------------------------
# Data and ground truth


def catalogue(n: int, dim: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """bench.micro's synthetic catalogue and queries (same seeds) -> (vectors normalised in place, queries)."""
    vectors = clustered_vectors(n, dim, clusters=max(100, n // 1000))
    queries = r.sample_queries(vectors, n_queries, seed=1)
    for s, e in _slices(n):  # in place: build_index's normalised copy of 10M x 64 would cost another 2.4 GiB
        v = vectors[s:e]
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return vectors, queries


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids [q, k] by inner product over normalised `vectors`, one slice at a time (no index copy)."""
    q = r.normalise(queries)
    best_d = np.empty((len(q), 0), np.float32)
    best_i = np.empty((len(q), 0), np.int64)
    for s, e in _bar(_slices(len(vectors)), "exact top-k", -(-len(vectors) // CHUNK)):
        d, i = faiss.knn(q, vectors[s:e], min(k, e - s), faiss.METRIC_INNER_PRODUCT)
        best_d, best_i = np.concatenate([best_d, d], axis=1), np.concatenate([best_i, i + s], axis=1)
        if best_d.shape[1] > k:
            keep = np.argpartition(-best_d, k - 1, axis=1)[:, :k]
            best_d, best_i = np.take_along_axis(best_d, keep, 1), np.take_along_axis(best_i, keep, 1)
    order = np.argsort(-best_d, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


# ---------------------------------------------------------------------------------------------------------
# Building


@dataclass
class Lists:
    """A trained coarse quantizer and every item's list: what IVF-Flat and IVF-PQ of one nlist share."""

    centroids: np.ndarray
    assign: np.ndarray  # int64 [n]
    sample: np.ndarray  # the training points (the PQ codebooks are fitted on the same ones, as in export)
    train_s: float
    assign_s: float


def train_lists(vectors: np.ndarray, nlist: int, per_list: int, seed: int = 0) -> Lists:
    n, dim = vectors.shape
    cap = per_list * nlist  # export's build_index caps the training points the same way
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(n, cap, replace=False))] if n > cap else vectors
    _log(f"k-means: {len(sample):,} points into {nlist:,} lists")
    t0 = time.perf_counter()
    ivf = r.new_index(r.IndexChoice("ivf_flat", {"nlist": nlist}), dim)  # export's quantizer and clustering
    ivf.train(sample)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    assign = np.empty(n, np.int64)
    for s, e in _bar(_slices(n), "assign to lists", -(-n // CHUNK)):
        assign[s:e] = ivf.quantizer.search(vectors[s:e], 1)[1][:, 0]
    assign_s = time.perf_counter() - t0
    _log(f"k-means {train_s:.1f} s, assignment {assign_s:.1f} s")
    return Lists(ivf.quantizer.reconstruct_n(0, nlist), assign, sample, train_s, assign_s)


def build_on_lists(vectors: np.ndarray, choice: r.IndexChoice, lists: Lists) -> tuple[faiss.Index, float]:
    """An IVF index on already trained lists and assignments -> (index, seconds of its own training and adding)."""
    t0 = time.perf_counter()
    index = r.new_index(choice, vectors.shape[1])
    faiss.extract_index_ivf(index).quantizer.add(lists.centroids)  # a full quantizer: train() fits the PQ only
    index.train(lists.sample)
    for s, e in _bar(_slices(len(vectors)), f"add {choice.kind}", -(-len(vectors) // CHUNK)):
        x, a = vectors[s:e], lists.assign[s:e]
        index.add_core(e - s, faiss.swig_ptr(x), None, faiss.swig_ptr(a))  # ids: ntotal + i, as add() gives
    r.set_search_params(index, choice)
    return index, time.perf_counter() - t0


def serialised_bytes(index: faiss.Index) -> int:
    writer = faiss.VectorIOWriter()  # its size, without a numpy copy of a multi-GiB buffer
    faiss.write_index(index, writer)
    return int(writer.data.size())


def hnsw_seconds(pilot_s: float, pilot_n: int, n: int) -> float:
    """HNSW build time predicted from a pilot: each insertion costs ~log n graph hops."""
    return pilot_s * (n / pilot_n) * (math.log(n) / math.log(pilot_n))


# ---------------------------------------------------------------------------------------------------------
# Searching


def _searcher(index: faiss.Index, choice: r.IndexChoice, gpu: Any) -> faiss.Index:
    r.set_search_params(index, choice)
    if gpu is None or choice.kind == "hnsw":
        return index
    return faiss.index_cpu_to_gpu(gpu, 0, index)  # the settings travel with the copy, as in the gateway


def sweep(
    index: faiss.Index,
    choice: r.IndexChoice,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    target: float,
    n_single: int,
    gpu: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Settings cheapest first until the target is reached (or recall stops improving) -> (picked, curve)."""
    key, values = search_settings(choice.kind, choice.params, k)
    curve: list[dict[str, Any]] = []
    for value in values:
        choice.params[key] = value
        m = r.measure(_searcher(index, choice, gpu), queries, truth, k, repeats=2)
        curve.append({"setting": f"{key}={value}", "value": value, "recall": m["recall"], "batch_qps": m["qps"]})
        _log(f"  {choice.kind} {key}={value}: recall@{k} {m['recall']:.4f}, {m['qps']:,.0f} q/s batched")
        if m["recall"] >= target or (len(curve) > 1 and m["recall"] - curve[-2]["recall"] < PLATEAU):
            break
    reached = [c for c in curve if c["recall"] >= target]
    best = max(c["recall"] for c in curve)
    pick = (reached or [c for c in curve if c["recall"] >= best - PLATEAU])[0]  # cheapest that reaches / ~ the best
    choice.params[key] = pick["value"]
    searcher = _searcher(index, choice, gpu)
    single = r.normalise(queries[:n_single])
    per_call = timed(lambda: [searcher.search(single[j : j + 1], k) for j in range(len(single))], 0.0, 2)
    return {**pick, "reached": bool(reached), "single_qps": len(single) / float(per_call.min())}, curve


# ---------------------------------------------------------------------------------------------------------
# One catalogue size


@dataclass
class Settings:
    dim: int
    kinds: Sequence[str]
    k: int
    target: float
    n_queries: int
    n_single: int
    lists_per_sqrt: float
    train_per_list: int
    max_build_s: float
    threads: int
    search_threads: int

    def nlist(self, n: int) -> int:
        return max(1, min(n // 39, round(self.lists_per_sqrt * math.sqrt(n))))


def measure_size(n: int, cfg: Settings, gpu: Any, pilot: dict[str, float] | None) -> dict[str, Any]:
    """Every kind at one catalogue size -> {"rows": [...], "skipped": [...], "exact_s": ...}."""
    t0 = time.perf_counter()
    vectors, queries = catalogue(n, cfg.dim, cfg.n_queries)
    _log(f"{n:,} x {cfg.dim}-d vectors and {len(queries)} queries in {time.perf_counter() - t0:.1f} s")
    faiss.omp_set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    truth = exact_topk(vectors, queries, cfg.k)
    exact_s = time.perf_counter() - t0
    _log(f"exact top-{cfg.k} of the sample in {exact_s:.1f} s")
    out: dict[str, Any] = {"items": n, "exact_s": exact_s, "rows": [], "skipped": []}
    nlist = cfg.nlist(n)
    ivf_kinds = [kd for kd in cfg.kinds if kd.startswith("ivf")]
    lists = train_lists(vectors, nlist, cfg.train_per_list) if ivf_kinds and gpu is None else None
    for kind in cfg.kinds:
        choice = r.choose_index(n, cfg.dim, kind, math.inf, **({"nlist": nlist} if kind.startswith("ivf") else {}))
        faiss.omp_set_num_threads(cfg.threads)
        parts: dict[str, float] = {}
        if kind == "hnsw" and pilot:
            predicted = hnsw_seconds(pilot["seconds"], int(pilot["items"]), n)
            if predicted > cfg.max_build_s:
                why = (
                    f"predicted build {predicted:,.0f} s > --max-build-s {cfg.max_build_s:,.0f} "
                    f"(from a {int(pilot['items']):,}-item build in {pilot['seconds']:.1f} s)"
                )
                out["skipped"].append({"items": n, "index": kind, "why": why, "predicted_build_s": predicted})
                _log(f"{kind} skipped at {n:,}: {why}")
                continue
        if lists is not None and kind.startswith("ivf"):
            index, own_s = build_on_lists(vectors, choice, lists)
            device, parts = "cpu", {"kmeans_s": lists.train_s, "assign_s": lists.assign_s, "own_s": own_s}
            build_s = lists.train_s + lists.assign_s + own_s
        else:
            t0 = time.perf_counter()
            index, device = r.build_index(vectors, choice, use_gpu=gpu is not None)
            build_s = time.perf_counter() - t0
            if kind == "hnsw" and pilot is not None:  # the largest real build predicts the next sizes best
                pilot.update(items=n, seconds=build_s)
        _log(f"built {kind} {choice.params} on {device} in {build_s:.1f} s")
        memory = serialised_bytes(index)
        faiss.omp_set_num_threads(cfg.search_threads)
        picked, curve = sweep(index, choice, queries, truth, cfg.k, cfg.target, cfg.n_single, gpu)
        del index
        out["rows"].append(
            {
                "items": n,
                "index": kind,
                "params": {a: b for a, b in choice.params.items() if a not in ("nprobe", "ef_search")},
                "setting": picked["setting"],
                "recall": picked["recall"],
                "reached": picked["reached"],
                "single_qps": picked["single_qps"],
                "batch_qps": picked["batch_qps"],
                "build_s": build_s,
                "build_parts": parts,
                "built_on": device,
                "memory_mb": memory / 2**20,
                "estimate_mb": r.estimate_bytes(n, cfg.dim, choice) / 2**20,
                "curve": curve,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# Extrapolation


def power_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """y = a x^b by least squares in log-log -> (a, b)."""
    b, log_a = np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)
    return float(math.exp(log_a)), float(b)


def extrapolate(rows: Sequence[dict[str, Any]], at: int, cfg: Settings) -> dict[str, Any]:
    """Per kind measured at >= 2 sizes: each figure's power law at `at` items, and the layout estimate of memory."""
    kinds: dict[str, Any] = {}
    for kind in dict.fromkeys(x["index"] for x in rows):
        measured = sorted((x for x in rows if x["index"] == kind), key=lambda x: x["items"])
        if len(measured) < 2:
            kinds[kind] = {"why": f"measured at {len(measured)} size: no fit"}
            continue
        ns = [x["items"] for x in measured]
        entry: dict[str, Any] = {"fitted_sizes": ns}
        for fig in FIGURES:
            a, b = power_fit(ns, [x[fig] for x in measured])
            entry[fig] = {"value": a * at**b, "exponent": b}
        overrides = {"nlist": cfg.nlist(at)} if kind.startswith("ivf") else {}
        entry["estimate_mb"] = r.estimate_bytes(at, cfg.dim, r.choose_index(at, cfg.dim, kind, math.inf, **overrides))
        entry["estimate_mb"] /= 2**20
        kinds[kind] = entry
    try:
        auto = r.choose_index(at, cfg.dim)
        export = f"{auto.kind} {auto.params} ({r.estimate_bytes(at, cfg.dim, auto) / 2**20:,.0f} MiB)"
    except r.IndexBudgetError as exc:
        export = str(exc)
    return {"items": at, "kinds": kinds, "export_default_budget": export, "budget_mb": r.DEFAULT_MEMORY_MB}


# ---------------------------------------------------------------------------------------------------------
# Report


def _f(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:.2f}"


def markdown(res: dict[str, Any]) -> str:
    meta, cfg, est = res["meta"], res["settings"], res["extrapolation"]
    k = cfg["k"]
    lines = [
        f"# FAISS at catalogue scale, {meta['date']}",
        "",
        f"`{meta['command']}` on {meta['cpu']} ({meta['cpus']} CPUs, GPU: {meta['gpu']}); faiss {meta['faiss']}. "
        f"Build on {cfg['threads']} thread(s), search on {cfg['search_threads']}. Load average at start "
        f"{meta['load_start']}, at the end {meta['load_end']}; this run: {meta['wall_s']:,.0f} s wall, "
        f"{meta['cpu_s']:,.0f} s CPU.",
        "",
        f"Data: bench.micro's synthetic clusters (n/1000 clusters of log-normal size, {cfg['dim']}-d; "
        f"`python -m bench.micro --synthetic` uses the same generator), {cfg['n_queries']} noisy-item queries. "
        f"Recall@{k} is against the exact top-{k} of those queries (a chunked brute-force scan). Each index is "
        f"shown at the cheapest nprobe / efSearch reaching recall {cfg['target']}, else at about the best one "
        f"tried (target met: no; the sweep stops when a step gains less than {PLATEAU}). Memory: the serialised "
        "index; estimate: export's layout formula (estimate_bytes).",
        "",
        f"Build settings: nlist = {cfg['lists_per_sqrt']:g} sqrt(n) (export uses 4 sqrt(n): the assignment costs "
        "n x nlist and the k-means ~ nlist^2 distance computations, more than 2 cores do at 10M in this run's time), "
        f"k-means on at most {cfg['train_per_list']} points per list (export: 256), faiss' 10 iterations; IVF-PQ "
        "and HNSW parameters are export's (choose_index). "
        + (
            "On the GPU every kind is built by export's build_index."
            if meta["gpu"].startswith("used")
            else "On CPU the two IVF kinds share one k-means and one assignment of the items to lists; each one's "
            "build time includes both."
        ),
        "",
        f"| items | index | params | setting | recall@{k} | target met | q/s one at a time | q/s batched | "
        "build s | memory MiB | estimate MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in res["rows"]:
        params = " ".join(f"{a}={b}" for a, b in x["params"].items())
        lines.append(
            f"| {x['items']:,} | {x['index']} | {params} | {x['setting']} | {x['recall']:.4f} | "
            f"{'yes' if x['reached'] else 'no'} | {x['single_qps']:,.0f} | {x['batch_qps']:,.0f} | "
            f"{_f(x['build_s'])} | {_f(x['memory_mb'])} | {_f(x['estimate_mb'])} |"
        )
    lines.append("")
    exact = ", ".join(f"{s['items']:,}: {s['exact_s']:.1f} s" for s in res["sizes"])
    lines.append(f"Exact top-{k} of the {cfg['n_queries']} sample queries ({cfg['threads']} threads): {exact}.")
    for s in res["skipped"]:
        lines.append(f"Not built: {s['index']} at {s['items']:,} items: {s['why']}.")
    lines += [
        "",
        f"## Extrapolation to {est['items']:,} items (not a measurement)",
        "",
        "A power law y = a n^b per index and figure, fitted over the measured sizes above and evaluated at "
        f"{est['items']:,} items; b is the fitted exponent. It assumes the trend holds 10x beyond the largest "
        "measured size: the nprobe that reaches the target, the cache behaviour and the build's memory traffic "
        "all change with size, so read it as an order of magnitude. 'layout' is export's memory formula there.",
        "",
        "| index | memory MiB (fit) | memory MiB (layout) | build s (fit) | q/s one at a time (fit) | "
        "q/s batched (fit) | b: memory, build, one, batched |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, e in est["kinds"].items():
        if "why" in e:
            lines.append(f"| {kind} | {e['why']} | | | | | |")
            continue
        b = ", ".join(f"{e[f]['exponent']:.2f}" for f in FIGURES)
        lines.append(
            f"| {kind} | {_f(e['memory_mb']['value'])} | {_f(e['estimate_mb'])} | {_f(e['build_s']['value'])} | "
            f"{_f(e['single_qps']['value'])} | {_f(e['batch_qps']['value'])} | {b} |"
        )
    lines += [
        "",
        f"Export at {est['items']:,} items with its default budget ({est['budget_mb']:,} MiB): "
        f"{est['export_default_budget']}.",
        "",
        f"![cost vs catalogue size]({res['plot']})",
        "",
    ]
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    est = res["extrapolation"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for ax, (fig_key, label) in zip(axes.flat, FIGURES.items(), strict=True):
        for kind in dict.fromkeys(x["index"] for x in res["rows"]):
            pts = sorted((x for x in res["rows"] if x["index"] == kind), key=lambda x: x["items"])
            ns, ys = [x["items"] for x in pts], [x[fig_key] for x in pts]
            line = ax.plot(ns, ys, marker="o", label=kind)[0]
            e = est["kinds"].get(kind, {})
            if fig_key in e:
                a, b = power_fit(ns, ys)
                xs = np.geomspace(ns[0], est["items"], 30)
                ax.plot(xs, a * xs**b, ls=":", color=line.get_color())
                ax.plot([est["items"]], [e[fig_key]["value"]], marker="o", mfc="none", color=line.get_color())
        if fig_key == "memory_mb":
            ax.axhline(est["budget_mb"], color="grey", ls="--", lw=1, label="export's default budget")
        ax.set(xscale="log", yscale="log", xlabel="catalogue items", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(
        f"FAISS cost vs catalogue size ({res['meta']['cpu']}, {res['settings']['threads']} build threads); "
        f"dotted + open circle: power-law extrapolation to {est['items']:,}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------


def _gpu_note(used: bool) -> str:
    if used:
        return "used for build and search"
    if r.gpu_available():
        return "present, not used (--cpu)"
    support = "with GPU support but no GPU" if hasattr(faiss, "StandardGpuResources") else "without GPU support"
    return f"none (faiss {support}): built and searched on CPU"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faiss_scale", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000000,3000000,10000000", help="catalogue sizes (comma list)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--kinds", default="ivf_flat,ivf_pq,hnsw")
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--target", type=float, default=r.RECALL_TARGET)
    p.add_argument("--queries", type=int, default=200, help="sample queries for recall and batched q/s")
    p.add_argument("--single-queries", type=int, default=100, help="of those, searched one per call")
    p.add_argument("--lists-per-sqrt", type=float, default=1.0, help="IVF nlist = this x sqrt(n) (export: 4)")
    p.add_argument(
        "--train-per-list",
        type=int,
        default=64,
        help="k-means points per list at most (export: 256; faiss wants >= 39; 64 keeps 10M within a 2-core run)",
    )
    p.add_argument("--max-build-s", type=float, default=300.0, help="skip HNSW where its predicted build is longer")
    p.add_argument("--threads", type=int, default=0, help="build threads; 0 = every CPU this process may use")
    p.add_argument("--search-threads", type=int, default=1, help="1 = what one gateway worker on one core does")
    p.add_argument("--extrapolate", type=int, default=100_000_000)
    p.add_argument("--cpu", action="store_true", help="stay on CPU even where a GPU is present")
    p.add_argument("--out", type=Path, default=None, help="report .md (.json and .png beside it)")
    ns = p.parse_args(argv)
    t_wall, load_start = time.perf_counter(), os.getloadavg()
    sizes = sorted(int(x) for x in ns.sizes.split(",") if x.strip())
    kinds = [x for x in ns.kinds.split(",") if x]
    unknown = set(kinds) - set(r.KINDS)
    if unknown:
        p.error(f"unknown kinds {sorted(unknown)}; choose from {r.KINDS}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cfg = Settings(
        dim=ns.dim,
        kinds=kinds,
        k=ns.k,
        target=ns.target,
        n_queries=ns.queries,
        n_single=min(ns.single_queries, ns.queries),
        lists_per_sqrt=ns.lists_per_sqrt,
        train_per_list=ns.train_per_list,
        max_build_s=ns.max_build_s,
        threads=ns.threads or cores,
        search_threads=ns.search_threads,
    )
    gpu = faiss.StandardGpuResources() if r.gpu_available() and not ns.cpu else None
    _log(f"sizes {sizes}, kinds {kinds}, {cfg.threads} build thread(s), {'GPU' if gpu else 'CPU only'}")

    pilot = None
    if "hnsw" in kinds:  # one small build says how long the big ones would take
        pilot_n = min(20_000, max(1_000, sizes[0] // 20))
        x, _ = catalogue(pilot_n, ns.dim, 1)
        faiss.omp_set_num_threads(cfg.threads)
        t0 = time.perf_counter()
        r.build_index(x, r.choose_index(pilot_n, ns.dim, "hnsw", math.inf), use_gpu=False)
        pilot = {"items": pilot_n, "seconds": time.perf_counter() - t0}
        _log(f"HNSW pilot: {pilot_n:,} items in {pilot['seconds']:.2f} s")

    per_size = [measure_size(n, cfg, gpu, pilot) for n in sizes]
    rows = [x for s in per_size for x in s["rows"]]
    out = ns.out or ROOT / "bench" / "results" / f"faiss_scale-{machine_slug()}-{dt.date.today().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    res: dict[str, Any] = {
        "meta": {
            "date": dt.date.today().isoformat(),
            "command": shlex.join(["python", "-m", "bench.faiss_scale", *(sys.argv[1:] if argv is None else argv)]),
            "cpu": cpu_model(),
            "cpus": cores,
            "gpu": _gpu_note(gpu is not None),
            "faiss": faiss.__version__,
            "load_start": " ".join(f"{v:.2f}" for v in load_start),
            "load_end": " ".join(f"{v:.2f}" for v in os.getloadavg()),
            "wall_s": time.perf_counter() - t_wall,
            "cpu_s": usage.ru_utime + usage.ru_stime,
        },
        "settings": cfg.__dict__ | {"kinds": list(kinds)},
        "hnsw_pilot": pilot,
        "sizes": [{"items": s["items"], "exact_s": s["exact_s"]} for s in per_size],
        "rows": rows,
        "skipped": [x for s in per_size for x in s["skipped"]],
        "plot": out.with_suffix(".png").name,
    }
    res["extrapolation"] = extrapolate(rows, ns.extrapolate, cfg)
    plot(res, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    out.write_text(markdown(res))
    _log(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
