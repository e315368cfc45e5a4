"""Leave-last-out splits and history tensors, on a hand-made log and against slow references."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.behavior import PROFILES, generate
from training.data.schema import BehaviorLog, Catalogue
from training.data.splits import event_histories, leave_last_out, positive_histories

V, C, A, B = 0, 1, 2, 3  # view, click, cart, buy


def _log(rows: list[tuple[int, int, int]]) -> BehaviorLog:
    """rows of (user, item, event) in time order per user."""
    user, item, event = (np.array(col) for col in zip(*rows, strict=True))
    cat = Catalogue(
        category=np.zeros(10, np.int32),
        brand=np.zeros(10, np.int32),
        price=np.ones(10, np.float32),
        n_categories=1,
        n_brands=1,
        item_ids=np.arange(10),
    )
    return BehaviorLog(
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        event=event.astype(np.int8),
        timestamp=np.arange(len(rows), dtype=np.int64),
        catalogue=cat,
        user_ids=np.arange(4),
    )


HAND = _log(
    [
        # user 0: two interactions; the last one is a click -> cart -> buy funnel followed by views
        (0, 1, V), (0, 2, C), (0, 3, V), (0, 4, C), (0, 4, A), (0, 4, B), (0, 5, V), (0, 6, V),
        # user 1: one interaction (two events on one item) -> stays in train
        (1, 7, V), (1, 8, C), (1, 8, A), (1, 9, V),
        # user 2: only views
        (2, 1, V), (2, 2, V),
        # user 3: three clicks, the same item twice apart -> two separate interactions at the end
        (3, 5, C), (3, 6, C), (3, 5, C),
    ]
)  # fmt: skip


def test_leave_last_out_on_a_hand_made_log():
    train, held = leave_last_out(HAND)
    assert held.user.tolist() == [0, 0, 0, 0, 0, 3]
    assert held.item.tolist() == [4, 4, 4, 5, 6, 5]  # the whole funnel and what follows it
    assert held.event.tolist() == [C, A, B, V, V, C]
    assert train.n_events + held.n_events == HAND.n_events
    assert set(train.user.tolist()) == {0, 1, 2, 3}
    assert train.catalogue is HAND.catalogue and train.n_users == HAND.n_users


def test_positive_histories_on_a_hand_made_log():
    hist, length = positive_histories(HAND, 3)
    assert length.tolist() == [3, 2, 0, 3]
    assert hist[0].tolist() == [4, 4, 4]  # most recent three positives
    assert hist[1].tolist() == [8, 8, 0]  # left-aligned, zeros beyond the length
    assert hist[3].tolist() == [5, 6, 5]
    h, n = event_histories(HAND, 2, np.array([0, 3, 5, 16]))
    assert n.tolist() == [0, 1, 2, 2]
    assert h.tolist() == [[0, 0], [2, 0], [4, 4], [5, 6]]


@pytest.fixture(scope="module")
def tiny_log():
    return generate(PROFILES["tiny"], seed=0)[0]


def test_leave_last_out_invariants(tiny_log):
    log = tiny_log
    train, held = leave_last_out(log)
    assert train.n_events + held.n_events == log.n_events
    pos = log.event >= 1
    # Each held-out block starts with a positive, comes after all of the user's train events ...
    users, first = np.unique(held.user, return_index=True)
    assert np.all(held.event[first] >= 1)
    last_train_time = np.full(log.n_users, -1, dtype=np.int64)
    np.maximum.at(last_train_time, train.user, train.timestamp)
    assert np.all(held.timestamp > last_train_time[held.user])
    # ... and contains exactly one positive interaction (one item).
    held_pos = held.event >= 1
    assert np.all(held.item[held_pos] == held.item[first][np.searchsorted(users, held.user[held_pos])])
    # Users with two or more interactions are split; the others keep all their events in train.
    interactions = np.zeros(log.n_users, dtype=int)
    rows = np.flatnonzero(pos)
    start = np.ones(rows.size, dtype=bool)
    start[1:] = (log.user[rows][1:] != log.user[rows][:-1]) | (log.item[rows][1:] != log.item[rows][:-1])
    np.add.at(interactions, log.user[rows][start], 1)
    assert set(users.tolist()) == set(np.flatnonzero(interactions >= 2).tolist())
    # Twice gives train / valid / test with the same rules.
    train2, valid = leave_last_out(train)
    assert train2.n_events + valid.n_events + held.n_events == log.n_events
    assert set(np.unique(valid.user).tolist()) <= set(users.tolist())


def test_histories_match_a_slow_reference(tiny_log):
    log = tiny_log
    max_len = 5
    hist, length = positive_histories(log, max_len)
    rows = np.random.default_rng(0).choice(log.n_events, 300, replace=False)
    eh, en = event_histories(log, max_len, rows)
    for u in range(0, log.n_users, 7):
        items = log.item[(log.user == u) & (log.event >= 1)][-max_len:].tolist()
        assert length[u] == len(items) and hist[u, : len(items)].tolist() == items
        assert not hist[u, len(items) :].any()
    for j, r in enumerate(rows):
        before = (log.user == log.user[r]) & (log.event >= 1) & (np.arange(log.n_events) < r)
        items = log.item[before][-max_len:].tolist()
        assert en[j] == len(items) and eh[j, : len(items)].tolist() == items
