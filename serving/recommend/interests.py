"""Retrieval for a multi-interest user tower: one FAISS search per user vector, merged by each item's best score.

The user tower emits [n_interests, dim] vectors per user (training/models/two_tower.py: an item's score is
the max over them). Each vector gets its top k; an item found by several keeps its best score, which is
exactly the trained score for every item in the merged top-k (an item outside all K top-k lists scores below
every one of them). A single-vector tower is the K = 1 case: the plain search.

On the CPU the K searches run one query at a time: FAISS spreads a small batch over its OpenMP threads, which
costs more than it saves for a handful of queries (4 queries, the quick 5,000-item flat index, this 2-core
machine: one batched call 0.57-0.68 ms at 2 threads, 4 one-query calls 0.29-0.38 ms; one query alone 0.06 ms).
A GPU index gets them as one batch (one launch).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Searcher(Protocol):
    device: str  # "cpu", or where a GPU engine searches

    def search(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None, blocked: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


def search_interests(
    index: Searcher,
    vectors: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    blocked: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One user's vectors ([dim], [1, dim] or [1, K, dim]) -> (scores [1, k], ids [1, k]) as `index.search`
    returns them: best score first, id -1 and score -inf where fewer than k items are eligible."""
    queries = np.asarray(vectors).reshape(-1, np.shape(vectors)[-1])
    if queries.shape[0] == 1:
        return index.search(queries, k, exclude, blocked)
    if getattr(index, "device", "cpu") == "cpu":
        parts = [index.search(queries[j : j + 1], k, exclude, blocked) for j in range(queries.shape[0])]
        scores, ids = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    else:
        scores, ids = index.search(queries, k, exclude, blocked)
    return merge_best(scores, ids, k)


def merge_best(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """K ranked lists ([K, n] each, -1 = empty slot) -> the k distinct ids with the highest score in any list."""
    flat_ids, flat_scores = ids.ravel(), scores.ravel()
    order = np.argsort(-flat_scores, kind="stable")
    ranked_ids = flat_ids[order]
    _, first = np.unique(ranked_ids, return_index=True)  # first = best-scored occurrence of each id
    keep = np.sort(first)
    keep = keep[ranked_ids[keep] >= 0][:k]
    out_ids = np.full((1, k), -1, np.int64)
    out_scores = np.full((1, k), -np.inf, np.float32)
    out_ids[0, : keep.size] = ranked_ids[keep]
    out_scores[0, : keep.size] = flat_scores[order][keep]
    return out_scores, out_ids
