"""Ranking metrics against cases worked out by hand."""

import math

import numpy as np
import pytest

from training.metrics.ranking import auc, gauc, ndcg_at_k, recall_at_k, target_ranks


def test_auc_perfect_reversed_and_ties():
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    # pairs (pos, neg): (0.5 vs 0.5) tie = 1/2, (0.5 vs 0.1) = 1, (0.9 vs 0.5) = 1, (0.9 vs 0.1) = 1 -> 3.5 / 4
    assert auc(y, np.array([0.5, 0.1, 0.5, 0.9])) == pytest.approx(3.5 / 4)
    assert auc(y, np.zeros(4)) == pytest.approx(0.5)


def test_auc_one_class_is_nan():
    assert math.isnan(auc(np.ones(3), np.arange(3.0)))


def test_auc_matches_pair_count_on_random_data():
    rng = np.random.default_rng(1)
    y = rng.random(60) < 0.3
    s = rng.integers(0, 5, 60).astype(float)  # many ties
    pos, neg = s[y], s[~y]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(y, s) == pytest.approx(pairs)


def test_gauc_weights_users_by_rows_and_skips_one_class_users():
    # user 7: 4 rows, AUC 1.0; user 3: 2 rows, AUC 0.0; user 5: only positives -> ignored.
    y = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    s = np.array([0.9, 0.8, 0.1, 0.2, 0.1, 0.9, 0.3, 0.4])
    g = np.array([7, 7, 7, 7, 3, 3, 5, 5])
    assert gauc(y, s, g) == pytest.approx((4 * 1.0 + 2 * 0.0) / 6)
    assert gauc(y, s, g, weight="uniform") == pytest.approx(0.5)
    # Scores differ in scale between users: global AUC suffers, GAUC does not.
    s2 = np.array([10.9, 10.8, 10.1, 10.2, 0.9, 0.1, 0.0, 0.0])
    assert gauc(y, s2, g) == 1.0 and auc(y, s2) < 1.0


def test_target_ranks_and_topk_metrics():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    ranks = target_ranks(scores, np.array([2, 3, 0]))
    assert ranks.tolist() == [1, 3, 0]
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 2) == pytest.approx(2 / 3)
    assert ndcg_at_k(ranks, 2) == pytest.approx((1 / np.log2(3) + 0 + 1) / 3)
    assert ndcg_at_k(ranks, 4) == pytest.approx((1 / np.log2(3) + 1 / np.log2(5) + 1) / 3)


def test_target_ranks_break_ties_uniformly():
    # All 4 items tie: the target's rank is uniform on 0..3, so recall@2 is 1/2 in expectation.
    scores = np.zeros((4000, 4))
    ranks = target_ranks(scores, np.zeros(4000, dtype=int), np.random.default_rng(0))
    assert set(np.unique(ranks)) == {0, 1, 2, 3}
    assert recall_at_k(ranks, 2) == pytest.approx(0.5, abs=0.03)
