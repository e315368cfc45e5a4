"""Row building for the recommendation tasks: labels, history windows, no future leakage."""

import numpy as np
import pytest

from training.data.schema import BehaviorLog, Catalogue
from training.data.splits import subset
from training.tasks.rec_samples import (
    add_sampled_negatives,
    impression_rows,
    interaction_starts,
    model_ids,
    target_rows,
)

VIEW, CLICK, CART, BUY = 0, 1, 2, 3


def tiny_log(seed: int = 0, n_users: int = 6, n_items: int = 40, per_user: int = 30) -> BehaviorLog:
    """A random log sorted by (user, timestamp) with repeated timestamps and click->cart->buy funnels."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(n_users), per_user).astype(np.int32)
    ts = np.sort(rng.integers(1000, 1040, (n_users, per_user)), axis=1).ravel().astype(np.int64)  # many ties
    event = rng.choice([VIEW, CLICK, CART, BUY], size=user.size, p=[0.6, 0.2, 0.1, 0.1]).astype(np.int8)
    item = rng.integers(0, n_items, user.size).astype(np.int32)
    # cart/buy continue the click before them on the same item (a funnel)
    funnel = (event >= CART) & (np.arange(user.size) > 0)
    item[funnel] = item[np.flatnonzero(funnel) - 1]
    cat = Catalogue(
        category=(np.arange(n_items) % 5).astype(np.int32),
        brand=(np.arange(n_items) % 3).astype(np.int32),
        price=np.linspace(1, 50, n_items).astype(np.float32),
        n_categories=5,
        n_brands=3,
        item_ids=np.arange(n_items),
    )
    return BehaviorLog(user, item, event, ts, cat, np.arange(n_users))


def test_impression_rows_labels_and_no_future_leakage():
    log = tiny_log()
    s = impression_rows(log, log, max_len=8)
    clicked = interaction_starts(log) | (log.event == CLICK)
    assert len(s) == int((log.event == VIEW).sum() + clicked.sum())
    assert s.label.sum() == clicked.sum()
    assert np.array_equal(np.sort(s.item[s.label == 0]), np.sort(log.item[log.event == VIEW]))
    hist, length = s.histories()
    hts = s.history_timestamps()
    valid = np.arange(8)[None, :] < length[:, None]
    assert hist.shape == (len(s), 8) and length.max() <= 8
    assert np.all(hts[valid] < np.repeat(s.timestamp, 8).reshape(-1, 8)[valid])  # strictly earlier
    assert np.all(hist[~valid] == 0)


def test_history_is_the_most_recent_positives_oldest_first():
    log = tiny_log(seed=3)
    s = target_rows(log, log, max_len=4)
    hist, length = s.histories()
    pos = log.event >= CLICK
    for r in range(len(s)):  # a reference by brute force on a tiny log (test only)
        prior = np.flatnonzero(pos & (log.user == s.user[r]) & (log.timestamp < s.timestamp[r]))
        want = log.item[prior][-4:]
        assert length[r] == len(want)
        assert hist[r, : length[r]].tolist() == want.tolist()


def test_funnel_counts_once():
    log = tiny_log(seed=1)
    s = target_rows(log, log, max_len=5)
    # Brute force: a positive starts an interaction unless the user's previous positive was the same item.
    want, last = [], {}
    for r in np.flatnonzero(log.event >= CLICK):
        u = int(log.user[r])
        if last.get(u) != log.item[r]:
            want.append(r)
        last[u] = log.item[r]
    assert np.flatnonzero(interaction_starts(log)).tolist() == want
    assert len(s) == len(want) and (log.event >= CART).sum() > 0


def test_rows_from_one_log_with_history_from_another():
    log = tiny_log(seed=2)
    late = log.timestamp >= 1030
    test_log, train_log = subset(log, late), subset(log, ~late)
    s = impression_rows(test_log, train_log, max_len=6)
    hist_ts = s.history_timestamps()
    assert len(s) > 0 and np.all(hist_ts < 1030)  # history comes only from the earlier log
    assert s.hist_len.max() > 0


def test_sampled_negatives_are_new_items():
    log = tiny_log(seed=4)
    s = target_rows(log, log, max_len=6)
    out = add_sampled_negatives(s, log.catalogue.n_items, per_positive=3, seed=0)
    neg = out.label == 0
    assert 0 < neg.sum() <= 3 * len(s)
    hist, length = out.histories()
    in_hist = ((hist == out.item[:, None]) & (np.arange(6)[None, :] < length[:, None])).any(axis=1)
    assert not in_hist[neg].any()
    assert np.all(np.diff(out.user) >= 0)


def test_model_ids_shift_and_pad():
    t = model_ids(np.array([[0, 5, 7], [3, 0, 0]]), np.array([2, 1]))
    assert t.tolist() == [[1, 6, 0], [4, 0, 0]]
    assert model_ids(np.array([0, 2])).tolist() == [1, 3]


def test_max_len_must_be_positive():
    log = tiny_log()
    s = target_rows(log, log, max_len=1)
    assert s.hist_len.max() == 1
    with pytest.raises(ValueError):
        impression_rows(log, log, max_len=0)
