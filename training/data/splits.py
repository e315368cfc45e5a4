"""Time-based splits and history tensors for the recommendation models.

Every function takes a `BehaviorLog` sorted by (user, timestamp), as the generator and the loaders
produce it, and is vectorised (no Python loop over users or events).

"Positive" = click, cart or buy (EVENT_TYPES[1:]); views never enter a history.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from training.data.schema import BehaviorLog

POSITIVE_MIN_EVENT = 1  # EVENT_TYPES index of 'click'; cart and buy follow it


def positive_mask(log: BehaviorLog) -> np.ndarray:
    """bool [n_events]: the event is a click, cart or buy."""
    return log.event >= POSITIVE_MIN_EVENT


def subset(log: BehaviorLog, rows: np.ndarray) -> BehaviorLog:
    """The events at `rows` (bool mask or sorted indices), sharing catalogue, users and features."""
    return replace(log, user=log.user[rows], item=log.item[rows], event=log.event[rows], timestamp=log.timestamp[rows])


def leave_last_out(log: BehaviorLog) -> tuple[BehaviorLog, BehaviorLog]:
    """Per user, move the last positive interaction and everything after it into a second log.

    The last positive interaction is the user's last positive event together with the positive
    events on the same item directly before it (a click -> cart -> buy funnel counts as one): were
    only the final 'buy' moved, its click would stay as the last training positive and the held-out
    item would sit in the user's own history. Users with fewer than two positive interactions stay
    in the first log only. Call it twice (on the first log again) for train / valid / test.

    -> (train, held_out); both keep the full catalogue, user ids and user features.
    """
    pos_rows = np.flatnonzero(positive_mask(log))
    held = np.zeros(log.n_events, dtype=bool)
    if pos_rows.size == 0:
        return subset(log, ~held), subset(log, held)
    pos_user = log.user[pos_rows]
    pos_item = log.item[pos_rows]
    # A run = consecutive positives of one user on one item.
    run_start = np.ones(pos_rows.size, dtype=bool)
    run_start[1:] = (pos_user[1:] != pos_user[:-1]) | (pos_item[1:] != pos_item[:-1])
    n_runs = np.bincount(pos_user[run_start], minlength=log.n_users)
    # Row of the first event of each user's last run: the last run start seen per user.
    starts = pos_rows[run_start]
    first_held_row = np.full(log.n_users, np.iinfo(np.int64).max, dtype=np.int64)
    last_start = np.full(log.n_users, -1, dtype=np.int64)
    np.maximum.at(last_start, log.user[starts], starts)
    eligible = n_runs >= 2
    first_held_row[eligible] = last_start[eligible]
    held = np.arange(log.n_events) >= first_held_row[log.user]
    return subset(log, ~held), subset(log, held)


def positive_histories(log: BehaviorLog, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's most recent positive items.

    -> hist int32 [n_users, max_len] (left-aligned, oldest first, zeros beyond the length; note that
    0 is also a valid item index, so always use the lengths), lengths int32 [n_users] in 0..max_len.
    """
    pos_rows = np.flatnonzero(positive_mask(log))
    counts = np.bincount(log.user[pos_rows], minlength=log.n_users)
    return _windows(log.item[pos_rows], _exclusive_cumsum(counts), counts, max_len)


def event_histories(log: BehaviorLog, max_len: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each event in `rows` (default: all), the user's positives strictly before it.

    This is the history a model sees when scoring that event (e.g. DIN's training rows), and what
    the generator's oracle takes. -> hist int32 [n_rows, max_len] (left-aligned, oldest first,
    zeros beyond), lengths int32 [n_rows].
    """
    rows = np.arange(log.n_events) if rows is None else np.asarray(rows)
    pos = positive_mask(log)
    pos_rows = np.flatnonzero(pos)
    # Positives strictly before each row (global count) and where each user's positives begin.
    before = np.concatenate([[0], np.cumsum(pos)])[rows]
    user_first = _exclusive_cumsum(np.bincount(log.user[pos_rows], minlength=log.n_users))
    first = user_first[log.user[rows]]
    return _windows(log.item[pos_rows], first, before - first, max_len)


def _exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=out[1:])
    return out


def _windows(items: np.ndarray, first: np.ndarray, count: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Last min(count, max_len) entries of items[first : first + count] per row, left-aligned."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    lengths = np.minimum(count, max_len).astype(np.int32)
    start = first + count - lengths
    col = np.arange(max_len)
    valid = col[None, :] < lengths[:, None]
    idx = np.where(valid, start[:, None] + col[None, :], 0)
    hist = np.where(valid, items[idx] if items.size else 0, 0).astype(np.int32)
    return hist, lengths
