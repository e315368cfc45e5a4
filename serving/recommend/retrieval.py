"""FAISS candidate retrieval for /v1/recommend: top-N item indices for a user vector.

The index is export's file (artifacts/retrieval/items.faiss, named in the manifest): ids are model
item indices 0..n-1, vectors L2-normalised, metric inner product. Search settings (IVF nprobe, HNSW
efSearch) start at the values export tuned for its recall target and can be overridden.

Where the search runs is chosen at start-up (`gpu`, SERVING_RETRIEVAL_GPU): "auto" moves a flat or IVF index to
a GPU when FAISS has GPU support and sees one (HNSW has no GPU version), else runs exact search with CuPy when it
imports and sees a CUDA device (`ExactIndex` over the index's vectors: recall 1, no nprobe / efSearch), else
searches the FAISS index on the CPU. "faiss" and "cupy" ask for one engine and fall back to the CPU with a
warning when it is not there; "off" is the CPU. `xp=numpy` runs the exact engine's code on the CPU (the tests).

Exclusion (seen items, out-of-stock items) over-fetches and filters: FAISS returns k + len(excluded)
rows, the excluded ones are dropped with one vectorised membership test, and the search widens
(doubling) only when blocked items crowd the top.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Literal, get_args

import faiss
import numpy as np

from serving.recommend.exact_index import ExactIndex, cupy_device
from serving.recommend.membership import isin

GpuChoice = Literal["auto", "faiss", "cupy", "off"]

log = logging.getLogger("serving.recommend.retrieval")


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Retriever:
    def __init__(
        self,
        index: faiss.Index | ExactIndex,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        gpu: GpuChoice | str = "auto",
        xp: ModuleType | None = None,
    ):
        """`index`: a CPU FAISS index (searched where `gpu` says) or an ExactIndex (searched as it is). `xp`: the
        array module of the exact engine when it is chosen; default: CuPy on a CUDA device, when present."""
        if gpu not in get_args(GpuChoice):
            raise ValueError(f"gpu must be one of {', '.join(get_args(GpuChoice))}, not {gpu!r}")
        self._gpu_resources = None
        if isinstance(index, ExactIndex):
            self.source_kind = "exact"
        else:
            self.source_kind = _kind(index)
            engine, exact_xp = _choose(gpu, self.source_kind, xp)
            if exact_xp is not None:
                try:
                    index = ExactIndex.from_faiss(index, exact_xp)
                except Exception as exc:  # e.g. the vectors do not fit the GPU's memory
                    if xp is not None:
                        raise
                    log.warning("exact search on the GPU (CuPy) failed to start (%s); searching FAISS on the CPU", exc)
            elif engine == "faiss-gpu":
                self._gpu_resources = faiss.StandardGpuResources()
        if isinstance(index, ExactIndex):  # nprobe / efSearch do not apply to exact search
            self.kind, self.engine, self.device = "exact", index.xp.__name__, index.device
            self.nprobe = self.ef_search = None
        else:
            self.kind, self.engine = self.source_kind, "faiss"
            if nprobe is not None:
                _set_param(index, "nprobe", nprobe)
            if ef_search is not None:
                _set_param(index, "efSearch", ef_search)
            self.device = "cpu"
            if self._gpu_resources is not None:  # the CPU index's search settings travel with the copy
                index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
                self.device = "gpu"
            self.nprobe, self.ef_search = nprobe, ef_search
        self.index = index

    @classmethod
    def load(cls, path: str | Path, **kwargs: object) -> Retriever:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:  # FAISS's own message names neither the file nor what to do
            raise ValueError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0]}); re-run export") from exc
        return cls(index, **kwargs)  # type: ignore[arg-type]

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "source_kind": self.source_kind,
            "engine": self.engine,
            "items": self.ntotal,
            "dim": self.dim,
            "device": self.device,
            "nprobe": self.nprobe,
            "ef_search": self.ef_search,
        }

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: np.ndarray | None = None,
        blocked: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query, leaving out `exclude` (item indices [B, E], -1 padded, or [E] for every query)
        and items where `blocked` [ntotal] is true. -> (scores [B, k] float32, ids [B, k] int64); a row
        with fewer than k eligible items is filled with id -1 and score -inf."""
        q = normalise(np.atleast_2d(queries))
        if q.shape[1] != self.dim:
            raise ValueError(f"query dim {q.shape[1]} != index dim {self.dim}")
        b = q.shape[0]
        if b == 1 and (exclude is None or np.ndim(exclude) == 1):
            return self._search_one(q, k, exclude, blocked)
        ex = (
            np.full((b, 0), -1, np.int64)
            if exclude is None
            else np.broadcast_to(np.atleast_2d(exclude), (b, np.shape(exclude)[-1]))
        )
        fetch = min(self.ntotal, k + ex.shape[1])
        while True:
            scores, ids = self.index.search(q, max(fetch, 1))
            drop = ids < 0
            if ex.shape[1]:
                # Membership of (query, id) pairs in one isin call: key = query * (n + 1) + id.
                stride = self.ntotal + 1
                rows = np.arange(b, dtype=np.int64)[:, None] * stride
                drop |= np.isin(rows + ids, (rows + ex)[ex >= 0])
            if blocked is not None:
                drop |= blocked[np.where(ids < 0, 0, ids)] & (ids >= 0)
            enough = (~drop).sum(axis=1).min() >= k
            if enough or fetch >= self.ntotal:
                break
            fetch = min(self.ntotal, fetch * 2)
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept ones first, in score order
        ids = np.take_along_axis(ids, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        gone = np.take_along_axis(drop, order, axis=1)
        pad = k - ids.shape[1]
        if pad > 0:  # fewer items in the index than k
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            gone = np.pad(gone, ((0, 0), (0, pad)), constant_values=True)
        return np.where(gone, -np.inf, scores).astype(np.float32), np.where(gone, -1, ids).astype(np.int64)

    def _search_one(
        self, q: np.ndarray, k: int, exclude: np.ndarray | None, blocked: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """search() for the one query of a /v1/recommend request: the same answer with a dozen fewer numpy
        calls (each costs microseconds; together they cost as much as the search)."""
        n = self.ntotal
        ex = np.empty(0, np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
        ex = ex[ex >= 0]
        fetch = min(n, k + ex.size)
        while True:
            scores, ids = self.index.search(q, max(fetch, 1))
            row, hit = scores[0], ids[0]
            keep = hit >= 0
            if ex.size:
                keep &= ~isin(hit, ex)
            if blocked is not None:
                keep &= ~blocked[np.maximum(hit, 0)]
            found = hit[keep][:k]
            if found.size >= k or fetch >= n:
                break
            fetch = min(n, fetch * 2)
        out_ids = np.full((1, k), -1, np.int64)
        out_scores = np.full((1, k), -np.inf, np.float32)
        out_ids[0, : found.size] = found
        out_scores[0, : found.size] = row[keep][:k]
        return out_scores, out_ids


def _choose(gpu: str, kind: str, xp: ModuleType | None) -> tuple[str, ModuleType | None]:
    """The engine for a FAISS index of `kind` -> ("faiss-gpu" | "cupy" | "cpu", the exact engine's array module)."""
    if gpu == "off":
        return "cpu", None
    if gpu in ("auto", "faiss") and gpu_count() > 0 and kind != "hnsw":
        return "faiss-gpu", None
    if gpu == "faiss":
        why = "HNSW has no FAISS GPU version" if gpu_count() > 0 else "FAISS has no GPU support or sees no GPU"
        log.warning("retrieval gpu=faiss: %s; searching FAISS on the CPU", why)
        return "cpu", None
    exact_xp = xp if xp is not None else cupy_device()
    if exact_xp is not None:
        return "cupy", exact_xp
    if gpu == "cupy":
        log.warning("retrieval gpu=cupy: CuPy is not installed or sees no CUDA device; searching FAISS on the CPU")
    return "cpu", None


def _set_param(index: faiss.Index, name: str, value: int) -> None:
    try:
        faiss.ParameterSpace().set_index_parameter(index, name, int(value))
    except RuntimeError as exc:
        raise ValueError(f"{name} does not apply to a {_kind(index)} index") from exc


def _kind(index: faiss.Index) -> str:
    base = faiss.downcast_index(index)
    name = type(base).__name__
    if "HNSW" in name:
        return "hnsw"
    if "IVF" in name:
        return "ivf"
    return "flat" if "Flat" in name else name
