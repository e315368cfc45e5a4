"""Exact inner-product top-k over the item vectors, written once against an array module (numpy or CuPy).

The CuPy retrieval path: the gateway runs it on a GPU when CuPy imports and sees a CUDA device (and FAISS has
no GPU support), and the tests run the very same code with numpy on the CPU. `ExactIndex` quacks like the part of
`faiss.Index` that `Retriever` uses (`ntotal`, `d`, `search`), so exclusions, blocks and padding stay the
Retriever's. The answer is exact search's: best first, ties broken by the lower id, and a query asking for more
than `ntotal` items gets id -1 and score -FLT_MAX past them, as `faiss.IndexFlatIP` fills them.

The items are scanned in chunks of `chunk_rows` and each query block's score matrix is at most
`score_elements` floats (a [b, n] matrix is never whole): per chunk, argpartition selects the k best, those are
sorted, and the chunk's top-k merges into the running one. Vectors are float32 and scores accumulate in float32.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger("serving.recommend.exact_index")

CHUNK_ROWS = 1 << 21  # items scored per step: 2M x 64-d float32 is 512 MiB of vectors, a view, not a copy
SCORE_ELEMENTS = 1 << 27  # score matrix of one (query block, chunk) step: 128M floats = 512 MiB
PAD_SCORE = float(-np.finfo(np.float32).max)  # what faiss.IndexFlatIP returns past ntotal (with id -1)
_RECONSTRUCT_ROWS = 1 << 21
BLOCK_WIDTH = 256  # columns per block of the pre-selection (_block_candidates)


def cupy_device() -> ModuleType | None:
    """CuPy when it imports and sees a CUDA device, else None (imported here, never at module import)."""
    try:
        import cupy
    except ImportError:
        return None
    except Exception as exc:  # a broken install (missing CUDA libraries) raises other errors at import
        log.debug("cupy does not import: %s", exc)
        return None
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # cupy's CUDARuntimeError: no driver, no device, driver too old
        log.debug("cupy sees no CUDA device: %s", exc)
        return None
    return cupy if count > 0 else None


def _to_numpy(xp: ModuleType, a: Any) -> np.ndarray:
    return xp.asnumpy(a) if hasattr(xp, "asnumpy") else np.asarray(a)


class ExactIndex:
    """Exact inner-product search over `vectors` [n, d] (L2-normalised, float32) held by the array module `xp`."""

    def __init__(
        self,
        vectors: Any,
        xp: ModuleType = np,
        *,
        chunk_rows: int = CHUNK_ROWS,
        score_elements: int = SCORE_ELEMENTS,
    ):
        v = xp.ascontiguousarray(xp.asarray(vectors, dtype=xp.float32))
        if v.ndim != 2:
            raise ValueError(f"item vectors must be [n, d], not {tuple(v.shape)}")
        self.xp = xp
        self.vectors = v
        self.ntotal, self.d = int(v.shape[0]), int(v.shape[1])
        self.chunk_rows = max(1, int(chunk_rows))
        self.query_rows = max(1, int(score_elements) // max(1, min(self.chunk_rows, self.ntotal)))

    @classmethod
    def from_faiss(cls, index: Any, xp: ModuleType = np, **kwargs: Any) -> ExactIndex:
        """The vectors a CPU FAISS index holds: flat and HNSW-flat as stored, IVF-Flat as stored (reconstruct_n
        scans the inverted lists; a FAISS that wants a direct map for it gets one), IVF-PQ as decoded from its
        codes (so the exact search is over the PQ approximation, not the exported vectors)."""
        import faiss

        n, d = int(index.ntotal), int(index.d)
        out = xp.empty((n, d), dtype=xp.float32)
        for s in range(0, n, _RECONSTRUCT_ROWS):  # in slices: the host holds one slice beside the index
            m = min(_RECONSTRUCT_ROWS, n - s)
            try:
                part = index.reconstruct_n(s, m)
            except RuntimeError as exc:
                try:
                    ivf = faiss.extract_index_ivf(index)
                except RuntimeError:  # not an IVF index: the reconstruct error is the one to show
                    raise exc from None
                ivf.make_direct_map()
                part = index.reconstruct_n(s, m)
            out[s : s + m] = xp.asarray(part, dtype=xp.float32)
        return cls(out, xp, **kwargs)

    @property
    def device(self) -> str:
        return "gpu" if self.xp.__name__ == "cupy" else "cpu"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """-> (scores [b, k] float32, ids [b, k] int64) as numpy arrays, best first, like faiss.Index.search."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.d:
            raise ValueError(f"queries must be [b, {self.d}], not {q.shape}")
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        b = q.shape[0]
        scores = np.full((b, k), PAD_SCORE, np.float32)
        ids = np.full((b, k), -1, np.int64)
        top = min(k, self.ntotal)
        if top == 0 or b == 0:
            return scores, ids
        for s in range(0, b, self.query_rows):
            block_scores, block_ids = self._search_block(q[s : s + self.query_rows], top)
            scores[s : s + self.query_rows, :top] = _to_numpy(self.xp, block_scores)
            ids[s : s + self.query_rows, :top] = _to_numpy(self.xp, block_ids)
        return scores, ids

    def _search_block(self, q_host: np.ndarray, k: int) -> tuple[Any, Any]:
        xp = self.xp
        q = xp.asarray(q_host)
        best: tuple[Any, Any] | None = None
        for start in range(0, self.ntotal, self.chunk_rows):
            chunk = self.vectors[start : start + self.chunk_rows]
            scores, ids = _chunk_top(xp, q @ chunk.T, k)
            ids += start
            if best is not None:  # earlier chunks hold the lower ids: ahead of this one's among equal scores
                scores, ids = xp.concatenate([best[0], scores], axis=1), xp.concatenate([best[1], ids], axis=1)
                order = xp.argsort(-scores, axis=1, kind="stable")[:, :k]
                scores, ids = xp.take_along_axis(scores, order, axis=1), xp.take_along_axis(ids, order, axis=1)
            best = scores, ids
        assert best is not None
        return best


def _block_candidates(xp: ModuleType, s: Any, k: int, width: int) -> Any | None:
    """Columns of `s` [b, c] that hold each row's k best: the k blocks of `width` columns with the highest maxima,
    in column order, [b, k * width]. Any score at or above the k-th block maximum lies in one of those blocks,
    and k such scores exist (one per block), so the row's top k is among them; the selection then sorts
    k * width columns, not c. (CuPy's argpartition sorts the whole row: over 2M columns that is most of a
    search.) Scores tied at the k-th place across blocks may keep another of the tied ids than the lowest; the
    scores are the same. None when the chunk is too small for it to pay."""
    b, c = s.shape
    if c < 4 * k * width:
        return None
    n_blocks = -(-c // width)
    if n_blocks * width != c:  # the last chunk of a catalogue: pad it with scores nothing can lose to
        s = xp.concatenate([s, xp.full((b, n_blocks * width - c), -xp.inf, dtype=s.dtype)], axis=1)
    maxima = s.reshape(b, n_blocks, width).max(axis=2)
    blocks = xp.sort(xp.argpartition(maxima, n_blocks - k, axis=1)[:, n_blocks - k :], axis=1)
    return (blocks[:, :, None] * width + xp.arange(width)).reshape(b, k * width)


def _chunk_top(xp: ModuleType, s: Any, k: int, width: int = BLOCK_WIDTH) -> tuple[Any, Any]:
    """`_select_top` over the block candidates where the chunk is large, else over the whole chunk."""
    cand = _block_candidates(xp, s, k, width)
    if cand is None:
        return _select_top(xp, s, k)
    top, pos = _select_top(xp, _gather(xp, s, cand), k)
    return top, xp.take_along_axis(cand, pos, axis=1)


def _gather(xp: ModuleType, s: Any, cols: Any) -> Any:
    """s[row, cols] with columns past the end (the padded last block) scoring -inf."""
    c = s.shape[1]
    got = xp.take_along_axis(s, xp.minimum(cols, c - 1), axis=1)
    return xp.where(cols < c, got, -xp.inf).astype(s.dtype)


def _select_top(xp: ModuleType, s: Any, k: int) -> tuple[Any, Any]:
    """The k best columns of each row of the score block `s` [b, c] -> (scores, column indices int64), sorted by
    score descending then column ascending. argpartition picks any k among scores tied with the k-th; when a row
    has such a tie, the selection is redone as 'above the k-th, then the lowest columns equal to it'."""
    b, c = s.shape
    if c > k:
        part = xp.argpartition(s, c - k, axis=1)[:, c - k :]
        kth = xp.take_along_axis(s, part, axis=1).min(axis=1, keepdims=True)
        if bool(((s >= kth).sum(axis=1) > k).any()):
            above = s > kth
            tied = s == kth
            need = k - above.sum(axis=1, keepdims=True)
            take = above | (tied & (xp.cumsum(tied, axis=1) <= need))
            part = xp.nonzero(take)[1].reshape(b, k)  # row-major: every row has exactly k
        cols = xp.sort(part, axis=1).astype(xp.int64)
    else:
        cols = xp.broadcast_to(xp.arange(c, dtype=xp.int64), (b, c))
    scores = xp.take_along_axis(s, cols, axis=1)
    order = xp.argsort(-scores, axis=1, kind="stable")
    return xp.take_along_axis(scores, order, axis=1), xp.take_along_axis(cols, order, axis=1)
