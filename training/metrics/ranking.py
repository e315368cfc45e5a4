"""Ranking and click metrics, pure numpy and vectorised (no loops over users or rows).

- `auc`, `gauc`: ROC AUC with tied scores counted as half (Mann-Whitney), and the DIN paper's group AUC:
  per-user AUC averaged with weights (rows per user by default), over users that have both classes.
- `target_ranks`: 0-based rank of one held-out item among all items, ties broken at random (seeded),
  so a model that scores many items equally (popularity) is neither flattered nor punished.
- `recall_at_k`, `ndcg_at_k`: from those ranks (one relevant item per user, so IDCG = 1).
"""

from __future__ import annotations

import numpy as np


def _group_rank_sums(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per group: (n_pos, n_neg, sum of the positives' mid-ranks within the group), over the unique groups.

    Ranks are 1-based within each group; tied scores share their average rank.
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    _, g = np.unique(np.asarray(groups).ravel(), return_inverse=True)
    n_groups = int(g.max()) + 1 if g.size else 0
    order = np.lexsort((scores, g))  # by group, then score ascending
    gs, ss = g[order], scores[order]
    # Runs of equal (group, score) share one average rank.
    new_run = np.ones(len(order), dtype=bool)
    new_run[1:] = (gs[1:] != gs[:-1]) | (ss[1:] != ss[:-1])
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.append(run_start, len(order)))
    group_start = np.zeros(n_groups, dtype=np.int64)
    first_of_group = np.ones(len(order), dtype=bool)
    first_of_group[1:] = gs[1:] != gs[:-1]
    group_start[gs[first_of_group]] = np.flatnonzero(first_of_group)
    # 1-based rank inside the group, averaged over the tie run: start + (len + 1) / 2.
    mid_rank = (run_start - group_start[gs[run_start]]) + (run_len + 1) / 2.0
    ranks = mid_rank[run_id]
    pos = labels[order]
    n_pos = np.bincount(gs, weights=pos, minlength=n_groups)
    n_all = np.bincount(gs, minlength=n_groups).astype(np.float64)
    rank_sum = np.bincount(gs, weights=ranks * pos, minlength=n_groups)
    return n_pos, n_all - n_pos, rank_sum


def _group_aucs(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, ...]:
    n_pos, n_neg, rank_sum = _group_rank_sums(labels, scores, groups)
    valid = (n_pos > 0) & (n_neg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        aucs = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return aucs, n_pos, n_neg, valid


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `scores` [n] for binary `labels` [n]; ties count 1/2. NaN when one class is missing."""
    labels = np.asarray(labels).ravel()
    aucs, _, _, valid = _group_aucs(labels, scores, np.zeros(labels.shape[0], dtype=np.int8))
    return float(aucs[0]) if valid.size and valid[0] else float("nan")


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, weight: str = "rows") -> float:
    """Group AUC (Zhou et al. 2018): sum_u w_u AUC_u / sum_u w_u over groups (users) with both classes.

    labels, scores, groups: [n]. weight: "rows" (w_u = the user's rows, the paper's impressions) or "uniform".
    """
    if weight not in ("rows", "uniform"):
        raise ValueError("weight must be 'rows' or 'uniform'")
    aucs, n_pos, n_neg, valid = _group_aucs(labels, scores, groups)
    if not valid.any():
        return float("nan")
    w = (n_pos + n_neg)[valid] if weight == "rows" else np.ones(int(valid.sum()))
    return float(np.sum(w * aucs[valid]) / np.sum(w))


def target_ranks(scores: np.ndarray, target: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """0-based rank of item `target[u]` in row `scores[u]` ([U, n_items] -> int64 [U]).

    rank = (#items scored higher) + a uniform draw from 0..(#other items scored equal), i.e. ties broken at
    random. rng: seeded generator (default seed 0) so reports are repeatable.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    scores = np.asarray(scores)
    rows = np.arange(scores.shape[0])
    t = scores[rows, target][:, None]
    higher = (scores > t).sum(axis=1)
    ties = (scores == t).sum(axis=1) - 1
    return higher + np.floor(rng.random(scores.shape[0]) * (ties + 1)).astype(np.int64)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of users whose single held-out item ranks in the top k (ranks: 0-based [U])."""
    return float(np.mean(np.asarray(ranks) < k))


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item per user: 1 / log2(rank + 2) when rank < k, else 0 (IDCG = 1)."""
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)))
