"""FAISS index over item-tower embeddings: exact for small catalogues, IVF / HNSW for large ones.

Vectors are L2-normalised and searched by inner product (= cosine; the towers already normalise, this
guards against drift). Index ids are model item indices (0..n-1); the gateway maps them to shop ids.

Choice (`kind="auto"`), by catalogue size and a memory budget (`memory_mb`, export's `--index-memory-mb`):
the best-recall kind whose estimated size (`estimate_bytes`) fits. Up to EXACT_MAX items an exact
IndexFlatIP (a 64-d brute-force scan of 50k vectors is well under a millisecond per query batch row, and
recall is 1 by definition); then IVF-Flat (nlist ~ 4 sqrt(n), full vectors: 4 dim + 8 bytes an item) while it
fits; beyond, IVF-PQ (m bytes + 8 an item), which keeps memory bounded at lower recall; when not even that fits,
a ValueError that says what would. An explicit kind must fit the budget too. HNSW is available by name (best
recall per query-time on CPU, but no GPU version and the largest index). bench/faiss_scale.py measures the
estimates against serialised indexes at 1M-10M items.
Every approximate index is measured against exact search (recall@k) and timed (queries/s); for IVF
the smallest nprobe that reaches the recall target is chosen and stored in the report and manifest.

GPU: when faiss has GPU support and a GPU is present, flat and IVF indexes are trained and filled on
the GPU and copied back with index_gpu_to_cpu before saving, so the same file loads on CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from training.common import progress

KINDS = ("flat", "ivf_flat", "ivf_pq", "hnsw")
EXACT_MAX = 50_000
# Half the gateway pod's 4 GiB limit (docker/k8s/base/gateway-deployment.yaml): every pod holds the whole index,
# and the models, feature tables, the live delta index and Python need the rest.
DEFAULT_MEMORY_MB = 2048
RECALL_TARGET = 0.95
_ADD_CHUNK = 65_536


class IndexBudgetError(ValueError):
    """No index kind fits the memory budget (export reports it as a one-line error, not a traceback)."""


@dataclass
class IndexChoice:
    kind: str
    params: dict[str, int] = field(default_factory=dict)


def choose_index(
    n: int, dim: int, kind: str = "auto", memory_mb: float = DEFAULT_MEMORY_MB, **overrides: int
) -> IndexChoice:
    """Index kind and parameters for n vectors of width dim within memory_mb MiB; explicit `overrides` win."""
    if kind != "auto" and kind not in KINDS:
        raise ValueError(f"index kind must be auto or one of {KINDS}, not {kind!r}")
    ladder = [kind] if kind != "auto" else (["flat"] if n <= EXACT_MAX else []) + ["ivf_flat", "ivf_pq"]
    budget = memory_mb * 2**20
    for candidate in ladder:  # best recall first
        choice = IndexChoice(candidate, _params(n, dim, candidate) | overrides)
        if estimate_bytes(n, dim, choice) <= budget:
            return choice
    need = estimate_bytes(n, dim, choice) / 2**20
    what = f"{choice.kind}" if kind != "auto" else f"{choice.kind}, the smallest kind,"
    raise IndexBudgetError(
        f"no FAISS index for {n:,} x {dim}-d vectors fits {memory_mb:,.0f} MiB: {what} needs about {need:,.0f} MiB; "
        f"raise --index-memory-mb (the gateway holds the whole index in every pod) or shard the catalogue"
    )


def _params(n: int, dim: int, kind: str) -> dict[str, int]:
    if kind.startswith("ivf"):
        # ~4 sqrt(n) lists, and at least 39 training points per list (faiss warns below that).
        nlist = int(np.clip(4 * math.sqrt(n), 1, max(1, n // 39)))
        params = {"nlist": nlist, "nprobe": min(nlist, 16)}
        if kind == "ivf_pq":
            m = max(d for d in range(1, min(dim, 64) + 1) if dim % d == 0 and dim // d >= 2)  # >= 2 dims/subvector
            params |= {"m": m, "nbits": 8 if n >= 256 * 39 else 4}
        return params
    if kind == "hnsw":
        return {"M": 32, "ef_construction": 200, "ef_search": 128}
    return {}


def estimate_bytes(n: int, dim: int, choice: IndexChoice) -> int:
    """Size of the serialised (= loaded) index, from its layout; bench/faiss_scale.py checks it at 1M-10M items.

    flat: the vectors; IVF: each item's code + its 8-byte id in a list, plus the centroids (and PQ codebooks);
    HNSW: the vectors + 2M level-0 links of 4 bytes, + ~16 bytes of level, offset and upper-level links."""
    p = choice.params
    if choice.kind == "flat":
        return n * dim * 4
    if choice.kind == "hnsw":
        return n * (dim * 4 + p["M"] * 2 * 4 + 16)
    centroids = p["nlist"] * dim * 4
    if choice.kind == "ivf_flat":
        return n * (dim * 4 + 8) + centroids
    codebooks = dim * 2 ** p["nbits"] * 4  # m sub-quantizers x 2^nbits centroids x dim/m floats
    return n * (-(-p["m"] * p["nbits"] // 8) + 8) + centroids + codebooks


def normalise(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def new_index(choice: IndexChoice, dim: int) -> faiss.Index:
    """The empty (untrained) CPU index of a choice."""
    p, ip = choice.params, faiss.METRIC_INNER_PRODUCT
    if choice.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if choice.kind == "ivf_flat":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, p["nlist"], ip)
    if choice.kind == "ivf_pq":
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, p["nlist"], p["m"], p["nbits"], ip)
        index.do_polysemous_training = False  # only serves Hamming pre-filtering, which is not used; slow to train
        return index
    index = faiss.IndexHNSWFlat(dim, p["M"], ip)
    index.hnsw.efConstruction = p["ef_construction"]
    return index


def build_index(
    vectors: np.ndarray, choice: IndexChoice, use_gpu: bool | None = None, seed: int = 0
) -> tuple[faiss.Index, str]:
    """Train (IVF) and fill an index with the normalised vectors -> (CPU index, "gpu" | "cpu" it was built on)."""
    x = normalise(vectors)
    n, dim = x.shape
    index = new_index(choice, dim)
    device = "cpu"
    if (gpu_available() if use_gpu is None else use_gpu) and choice.kind != "hnsw":
        res = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(res, 0, index)
        device = "gpu"
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        cap = 256 * choice.params["nlist"]  # more training points than this adds time, not quality
        index.train(x[rng.choice(n, cap, replace=False)] if n > cap else x)
    for s in progress(range(0, n, _ADD_CHUNK), desc=f"faiss {choice.kind}", total=-(-n // _ADD_CHUNK), leave=False):
        index.add(x[s : s + _ADD_CHUNK])
    if device == "gpu":
        index = faiss.index_gpu_to_cpu(index)  # saved on CPU: the same file loads without a GPU
    set_search_params(index, choice)
    return index, device


def set_search_params(index: faiss.Index, choice: IndexChoice) -> None:
    if choice.kind.startswith("ivf"):
        faiss.extract_index_ivf(index).nprobe = int(choice.params["nprobe"])
    elif choice.kind == "hnsw":
        index.hnsw.efSearch = int(choice.params["ef_search"])


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ground truth ids [q, k] by brute-force inner product."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(normalise(vectors))
    return flat.search(normalise(queries), k)[1]


def ann_recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top-k that the index also returned (vectorised set overlap)."""
    k = truth.shape[1]
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=1).sum(axis=1)
    return float(hits.mean() / k)


def measure(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, k: int, repeats: int = 3) -> dict[str, float]:
    """recall@k against `truth` and batch throughput (queries/s, best of `repeats`)."""
    q = normalise(queries)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, ids = index.search(q, k)
        best = min(best, time.perf_counter() - t0)
    return {"recall": ann_recall_at_k(ids, truth), "qps": float(len(q) / best)}


def tune(
    index: faiss.Index, choice: IndexChoice, queries: np.ndarray, truth: np.ndarray, k: int, target: float
) -> list[dict[str, float]]:
    """Smallest nprobe (IVF) / efSearch (HNSW) reaching the recall target; sets it in `choice` and the index.

    Returns the measured curve (one row per setting tried) for the report."""
    if choice.kind == "flat":
        return [{"setting": 0, **measure(index, queries, truth, k)}]
    key, top = ("nprobe", choice.params["nlist"]) if choice.kind.startswith("ivf") else ("ef_search", 1024)
    start = 1 if key == "nprobe" else max(k, 16)
    settings = sorted({min(top, start * 2**i) for i in range(int(math.log2(max(top // start, 1))) + 2)})
    curve = []
    for value in settings:
        choice.params[key] = value
        set_search_params(index, choice)
        row = {"setting": value, **measure(index, queries, truth, k)}
        curve.append(row)
        if row["recall"] >= target:
            break
    return curve


def sample_queries(vectors: np.ndarray, n: int, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """Stand-in queries when no user vectors are given: random items moved off the item manifold by noise."""
    rng = np.random.default_rng(seed)
    base = normalise(vectors[rng.integers(0, len(vectors), size=n)])
    return normalise(base + noise * rng.standard_normal(base.shape).astype(np.float32) / math.sqrt(base.shape[1]))


def build_and_measure(
    vectors: np.ndarray,
    kind: str = "auto",
    k: int = 100,
    queries: np.ndarray | None = None,
    n_queries: int = 1000,
    target: float = RECALL_TARGET,
    use_gpu: bool | None = None,
    memory_mb: float = DEFAULT_MEMORY_MB,
    **overrides: int,
) -> tuple[faiss.Index, dict[str, Any]]:
    """The whole step: choose, build, tune against exact search, measure. -> (index, report section)."""
    n, dim = vectors.shape
    choice = choose_index(n, dim, kind, memory_mb, **overrides)
    t0 = time.perf_counter()
    index, device = build_index(vectors, choice, use_gpu)
    build_s = time.perf_counter() - t0
    q = queries if queries is not None else sample_queries(vectors, n_queries)
    k = min(k, n)
    truth = exact_topk(vectors, q, k)
    curve = tune(index, choice, q, truth, k, target) if choice.kind != "flat" else []
    final = measure(index, q, truth, k)
    return index, {
        "index_type": choice.kind,
        "index_params": dict(choice.params),
        "metric": "inner_product",
        "item_count": int(n),
        "embedding_dim": int(dim),
        "built_on": device,
        "build_seconds": round(build_s, 3),
        "memory_budget_mb": memory_mb,
        "memory_estimate_mb": round(estimate_bytes(n, dim, choice) / 2**20, 3),
        "k": k,
        f"recall_at_{k}": final["recall"],
        "queries_per_s": final["qps"],
        "n_queries": len(q),
        "query_source": "given" if queries is not None else "noisy item vectors",
        "recall_target": target,
        "target_reached": final["recall"] >= target or choice.kind == "flat",
        "tuning": curve,
        "faiss": faiss.__version__,
        "threads": faiss.omp_get_max_threads(),
    }


def save_index(index: faiss.Index, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(path)
    return path


def load_index(path: str | Path) -> faiss.Index:
    return faiss.read_index(str(path))


def choice_dict(choice: IndexChoice) -> dict[str, Any]:
    return asdict(choice)


def _bench(argv: list[str] | None = None) -> int:
    """`python -m export.retrieval --items N --dim D --kinds flat ivf_flat hnsw`: index kinds on clustered
    synthetic vectors (trained embeddings cluster; uniform random vectors would flatter no index)."""
    import argparse

    from training.report import format_table

    p = argparse.ArgumentParser(prog="python -m export.retrieval", description=_bench.__doc__)
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--kinds", nargs="+", default=["flat", "ivf_flat", "hnsw"], choices=["auto", *KINDS])
    ns = p.parse_args(argv)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((ns.clusters, ns.dim)).astype(np.float32)
    x = centres[rng.integers(0, ns.clusters, ns.items)] + 0.5 * rng.standard_normal((ns.items, ns.dim)).astype(
        np.float32
    )
    queries = sample_queries(x, ns.queries, seed=1)
    rows = []
    for kind in ns.kinds:
        _, r = build_and_measure(x, kind, k=ns.k, queries=queries)
        rows.append(
            {
                "index": r["index_type"],
                "params": " ".join(f"{k}={v}" for k, v in r["index_params"].items()),
                f"recall@{r['k']}": r[f"recall_at_{r['k']}"],
                "queries/s": round(r["queries_per_s"]),
                "build s": r["build_seconds"],
            }
        )
    print(
        f"{ns.items} x {ns.dim} clustered vectors, {ns.queries} queries, faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads"
    )
    print(format_table(rows, floatfmt="{:.4f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(_bench())
