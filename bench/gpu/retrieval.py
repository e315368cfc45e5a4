"""GPU retrieval: the gateway's exact CuPy search (serving/recommend/exact_index.py) against FAISS on the CPU.

Per catalogue size: recall@k of each method against exact search, and the time of one query batch (64 by
default; queries/s from it). Vectors are bench.faiss_scale's synthetic catalogue. On a machine without
cupy or a GPU the exact index runs its numpy fallback (the dry run); without faiss only the exact index runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from serving.recommend.exact_index import ExactIndex, cupy_device

NPROBES = (8, 16, 32, 64, 128)


def _time_batches(search: Callable[[np.ndarray], object], batches: Sequence[np.ndarray], repeats: int) -> float:
    """Median seconds of one batch search (after one warm-up call)."""
    search(batches[0])
    times = []
    for _ in range(repeats):
        for q in batches:
            t0 = time.perf_counter()
            search(q)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top-k ids that `found` holds."""
    hits = [np.intersect1d(f, t).size / max(t.size, 1) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def _row(method: str, n: int, batch: int, seconds: float, rec: float, **extra: Any) -> dict[str, Any]:
    return {
        "method": method,
        "items": n,
        "batch": batch,
        "ms_per_batch": seconds * 1e3,
        "queries_per_s": batch / seconds if seconds > 0 else math.nan,
        "recall": rec,
        **extra,
    }


def measure(
    n: int, dim: int, k: int, batch: int, n_batches: int, repeats: int, target: float = 0.95
) -> list[dict[str, Any]]:
    from bench.faiss_scale import catalogue

    vectors, queries = catalogue(n, dim, batch * n_batches)
    batches = [queries[i * batch : (i + 1) * batch] for i in range(n_batches)]
    xp = cupy_device()
    exact = ExactIndex(vectors, xp=xp) if xp is not None else ExactIndex(vectors)
    device = "gpu (cupy)" if xp is not None else "cpu (numpy fallback)"
    truth = np.concatenate([exact.search(q, k)[1] for q in batches])
    rows = [
        _row("exact top-k", n, batch, _time_batches(lambda q: exact.search(q, k), batches, repeats), 1.0, device=device)
    ]
    try:
        import faiss
    except ImportError:
        return rows
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    found = np.concatenate([flat.search(q, k)[1] for q in batches])
    sec = _time_batches(lambda q: flat.search(q, k), batches, repeats)
    rows.append(
        _row("FAISS flat", n, batch, sec, recall(found, truth), device=f"cpu ({faiss.omp_get_max_threads()} threads)")
    )
    rows[0]["equal_to_faiss_flat"] = bool(rows[-1]["recall"] == 1.0)
    nlist = max(16, int(4 * math.sqrt(n)) // 16 * 16)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    sample = vectors[np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)]
    ivf.train(sample)
    ivf.add(vectors)
    build_s = time.perf_counter() - t0
    for nprobe in (p for p in NPROBES if p <= nlist):
        ivf.nprobe = nprobe
        found = np.concatenate([ivf.search(q, k)[1] for q in batches])
        rec = recall(found, truth)
        if rec >= target or nprobe == max(p for p in NPROBES if p <= nlist):
            sec = _time_batches(lambda q: ivf.search(q, k), batches, repeats)
            rows.append(
                _row("FAISS IVF-flat", n, batch, sec, rec, device="cpu", nlist=nlist, nprobe=nprobe, build_s=build_s)
            )
            break
    return rows


def run(
    sizes: Sequence[int], dim: int = 64, k: int = 200, batch: int = 64, n_batches: int = 4, repeats: int = 3
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in sizes:
        rows += measure(n, dim, k, batch, n_batches, repeats)
    return rows
