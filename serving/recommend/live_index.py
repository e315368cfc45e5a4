"""Retrieval over the exported FAISS index plus the items the catalogue changed online (a main + delta index).

The exported index is never written to: a FAISS search running in a worker thread must not meet a write,
and its ids must stay the model indices. Items added online, and known items whose category, brand or
price changed (so their item-tower vector did), live in a small exact inner-product index beside it, built
anew with each catalogue change; a known item moved there is left out of the main search. Both searches
honour the same exclusions, and their top lists merge by score.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from serving.recommend.retrieval import Retriever, normalise

EMPTY_IDS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Delta:
    """The online items' vectors: `ids` are item indices (known ones re-embedded, then added ones)."""

    ids: np.ndarray  # int64 [m]
    vectors: np.ndarray  # float32 [m, d], L2-normalised

    @classmethod
    def empty(cls, dim: int) -> Delta:
        return cls(EMPTY_IDS, np.zeros((0, dim), np.float32))

    def with_vectors(self, ids: np.ndarray, vectors: np.ndarray) -> Delta:
        """A copy where `ids` get `vectors` (replacing the ones they had)."""
        keep = ~np.isin(self.ids, ids)
        return Delta(np.concatenate([self.ids[keep], ids]), np.concatenate([self.vectors[keep], normalise(vectors)]))


class LiveIndex:
    """`Retriever.search`'s interface over the main index and a delta."""

    def __init__(self, main: Retriever, delta: Delta):
        self.main, self.delta = main, delta
        n = main.ntotal
        known = delta.ids[delta.ids < n]
        self.superseded: np.ndarray | None = None
        if known.size:
            self.superseded = np.zeros(n, dtype=bool)
            self.superseded[known] = True
        self._flat: faiss.IndexFlatIP | None = None
        if delta.ids.size:
            self._flat = faiss.IndexFlatIP(main.dim)
            self._flat.add(delta.vectors)

    @property
    def dim(self) -> int:
        return self.main.dim

    @property
    def device(self) -> str:
        return self.main.device

    @property
    def ntotal(self) -> int:
        """Items that can be found: the main index's plus the added ones."""
        return self.main.ntotal + int(np.count_nonzero(self.delta.ids >= self.main.ntotal))

    def search(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None, blocked: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query over both indexes; `blocked` [items] covers the added items too. -> as Retriever's."""
        n = self.main.ntotal
        main_blocked = None if blocked is None else blocked[:n]
        if self.superseded is not None:
            main_blocked = self.superseded if main_blocked is None else main_blocked | self.superseded
        scores, ids = self.main.search(queries, k, exclude, main_blocked)
        if self._flat is None:
            return scores, ids
        q = normalise(np.atleast_2d(queries))
        ex = EMPTY_IDS if exclude is None else np.asarray(exclude, dtype=np.int64)
        d_scores, pos = self._flat.search(q, min(self.delta.ids.size, k + ex.shape[-1]))
        d_ids = np.where(pos >= 0, self.delta.ids[np.maximum(pos, 0)], -1)
        drop = pos < 0
        if blocked is not None:
            drop |= blocked[np.maximum(d_ids, 0)]
        if ex.size:
            rows = np.broadcast_to(np.atleast_2d(ex), (q.shape[0], ex.shape[-1]))
            drop |= np.array([np.isin(d, r) for d, r in zip(d_ids, rows, strict=True)])  # rows: a handful
        d_scores = np.where(drop, -np.inf, d_scores).astype(np.float32)
        d_ids = np.where(drop, -1, d_ids)
        all_scores = np.concatenate([scores, d_scores], axis=1)
        all_ids = np.concatenate([ids, d_ids], axis=1)
        order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(all_scores, order, axis=1), np.take_along_axis(all_ids, order, axis=1)
