"""The re-ranking parts of serving/recommend/feedback.py on hand-made arrays, and IdMap.known."""

from __future__ import annotations

import numpy as np
import pytest

from serving.contracts.errors import InvalidInput
from serving.contracts.ids import IdMap
from serving.recommend.features import ItemTable
from serving.recommend.feedback import explore_candidates, explore_slots, rerank, streak_categories

A = np.array


def test_a_streak_counts_skips_after_the_last_positive_of_that_category():
    skip_cats, skip_ts = A([1, 1, 1, 2, 2, 3]), A([10.0, 11, 12, 13, 14, 15])
    assert streak_categories(skip_cats, skip_ts, A([], dtype=np.int64), A([]), 3).tolist() == [1]
    assert streak_categories(skip_cats, skip_ts, A([1]), A([10.5]), 3).tolist() == []  # a click broke the run
    assert streak_categories(skip_cats, skip_ts, A([1, 2]), A([9.0, 1.0]), 2).tolist() == [1, 2]  # clicks before
    assert streak_categories(A([1]), A([1.0]), A([]), A([]), 3).tolist() == []


def test_rerank_down_weights_and_reserves_exploration_slots():
    scores, cats = A([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), A([0, 0, 1, 1, 2, 3])
    top, final = rerank(scores, cats, 3, A([], dtype=np.int64), 0.5, A([], dtype=np.int64), 0)
    assert top.tolist() == [0, 1, 2] and final.tolist() == scores.tolist()
    top, final = rerank(scores, cats, 3, A([0]), 0.5, A([], dtype=np.int64), 0)
    assert top.tolist() == [2, 3, 4] and final[0] == pytest.approx(0.45)
    # 2 of 3 slots explore categories outside {0, 1}: the best of category 2 and of 3, in score order.
    top, _ = rerank(scores, cats, 3, A([], dtype=np.int64), 0.5, A([0, 1]), 2)
    assert top.tolist() == [0, 4, 5]
    assert [explore_slots(s, 10) for s in (0, 0.04, 0.05, 0.2, 1.0)] == [0, 0, 1, 2, 10]


def test_exploration_candidates_are_the_best_sellers_of_unseen_categories():
    items = ItemTable(
        IdMap(A([f"i{i}" for i in range(8)])),
        A([0, 0, 1, 1, 2, 2, 3, 3]),
        popularity=A([7.0, 6, 5, 4, 3, 2, 1, 0]),
        available=A([True, True, False, True, True, True, True, True]),
    )
    assert explore_candidates(items, A([0]), A([4], dtype=np.int64), 5).tolist() == [3, 5, 6]  # 2 blocked, 4 excluded


def test_known_skips_unknown_ids_and_refuses_malformed_ones():
    strings, ints = IdMap(A(["a", "b", "c"])), IdMap(A([10, 20, 30]))
    index, unknown = strings.known(["c", "new", "a", 5], "history")
    assert index.tolist() == [2, 0] and unknown == 2
    index, unknown = ints.known([30, "10", 99], "history")
    assert index.tolist() == [2, 0] and unknown == 1
    with pytest.raises(InvalidInput) as err:
        ints.known([10, "abc"], "history")
    assert err.value.loc == ["body", "history", 1] and "malformed id 'abc'" in err.value.msg
    assert strings.known([], "history")[1] == 0
