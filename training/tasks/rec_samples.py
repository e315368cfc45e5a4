"""Training and evaluation rows for the two-tower and DIN tasks, built from a BehaviorLog.

A row is (user, candidate item, label, timestamp) plus the user's positive history at that moment:
the positives (click/cart/buy) of the *history log* with a timestamp strictly before the row's, the
most recent `max_len` of them, oldest first. Rows and history may come from different logs, so a test
row from the held-out log sees the training events before it, and nothing after it.

Histories are not materialised per row: a row keeps (start, length) into the history log's positive
items and `histories(idx)` gathers a batch, so millions of rows cost a few int arrays.

Row kinds:
- `target_rows`: one row per positive interaction (the first event of a click -> cart -> buy run on
  one item), label 1. The two-tower learns to retrieve these; they are DIN's clicked impressions.
- `impression_rows`: every impression: views (shown, not clicked) label 0; clicks, and carts/buys that
  start an interaction without a click, label 1 (a cart after its click is not a second impression).
  DIN's training and test rows; the oracle's click_prob is defined on exactly these.
- `add_sampled_negatives`: the DIN paper's negatives: items drawn uniformly from the catalogue that
  the user has not interacted with (in the row's history or the row's own positive), label 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from training.data.schema import EVENT_TYPES, ID_OFFSET, BehaviorLog, BehaviorOracle
from training.data.splits import positive_mask

CLICK = EVENT_TYPES.index("click")


@dataclass
class RecSamples:
    """Rows with lazily gathered histories. All arrays [n_rows] unless noted."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32 candidate item
    label: np.ndarray  # float32 1 = positive interaction, 0 = shown and not clicked / sampled negative
    timestamp: np.ndarray  # int64
    hist_start: np.ndarray  # int64 into pos_item
    hist_len: np.ndarray  # int32 in 0..max_len
    pos_item: np.ndarray  # int32 [n_positives] the history log's positive items in (user, time) order
    pos_timestamp: np.ndarray  # int64 [n_positives]
    max_len: int

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, idx: np.ndarray) -> RecSamples:
        return replace(
            self,
            user=self.user[idx],
            item=self.item[idx],
            label=self.label[idx],
            timestamp=self.timestamp[idx],
            hist_start=self.hist_start[idx],
            hist_len=self.hist_len[idx],
        )

    def histories(self, idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """-> hist int32 [b, max_len] (item indices, left-aligned, oldest first, 0 beyond), lengths int32 [b]."""
        start = self.hist_start if idx is None else self.hist_start[idx]
        length = self.hist_len if idx is None else self.hist_len[idx]
        col = np.arange(self.max_len)
        valid = col[None, :] < length[:, None]
        pos = np.where(valid, start[:, None] + col[None, :], 0)
        hist = np.where(valid, self.pos_item[pos] if self.pos_item.size else 0, 0).astype(np.int32)
        return hist, length.astype(np.int32)

    def history_timestamps(self, idx: np.ndarray | None = None) -> np.ndarray:
        """int64 [b, max_len] timestamp of each history entry (-1 beyond the length); for leakage checks."""
        start = self.hist_start if idx is None else self.hist_start[idx]
        length = self.hist_len if idx is None else self.hist_len[idx]
        col = np.arange(self.max_len)
        valid = col[None, :] < length[:, None]
        pos = np.where(valid, start[:, None] + col[None, :], 0)
        return np.where(valid, self.pos_timestamp[pos] if self.pos_timestamp.size else -1, -1)


def interaction_starts(log: BehaviorLog) -> np.ndarray:
    """bool [n_events]: the event is the first positive of a run of positives by one user on one item.

    A click followed by cart and buy of the same item is one interaction, not three next items.
    """
    pos = positive_mask(log)
    rows = np.flatnonzero(pos)
    start = np.ones(rows.size, dtype=bool)
    start[1:] = (log.user[rows[1:]] != log.user[rows[:-1]]) | (log.item[rows[1:]] != log.item[rows[:-1]])
    out = np.zeros(log.n_events, dtype=bool)
    out[rows[start]] = True
    return out


def _rows(
    rows_log: BehaviorLog, select: np.ndarray, label: np.ndarray, history_log: BehaviorLog, max_len: int
) -> RecSamples:
    """Rows `select` (bool [n_events] of rows_log) with histories from history_log's earlier positives."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    hist_rows = np.flatnonzero(positive_mask(history_log))
    p_user = history_log.user[hist_rows].astype(np.int64)
    p_ts = history_log.timestamp[hist_rows].astype(np.int64)
    user = rows_log.user[select]
    ts = rows_log.timestamp[select].astype(np.int64)
    # One sortable key per (user, time): the log is sorted by (user, timestamp), so is the key.
    t0 = min(int(p_ts.min(initial=0)), int(ts.min(initial=0)))
    span = max(int(p_ts.max(initial=0)), int(ts.max(initial=0))) - t0 + 2
    p_key = p_user * span + (p_ts - t0)
    r_key = user.astype(np.int64) * span + (ts - t0)
    end = np.searchsorted(p_key, r_key, side="left")  # positives strictly before (same user, earlier time)
    first = np.searchsorted(p_key, user.astype(np.int64) * span, side="left")  # the user's first positive
    length = np.minimum(end - first, max_len)
    return RecSamples(
        user=user.astype(np.int32),
        item=rows_log.item[select].astype(np.int32),
        label=label.astype(np.float32),
        timestamp=ts,
        hist_start=(end - length).astype(np.int64),
        hist_len=length.astype(np.int32),
        pos_item=history_log.item[hist_rows].astype(np.int32),
        pos_timestamp=p_ts,
        max_len=max_len,
    )


def target_rows(rows_log: BehaviorLog, history_log: BehaviorLog, max_len: int) -> RecSamples:
    """One label-1 row per positive interaction of rows_log (the two-tower's training pairs)."""
    select = interaction_starts(rows_log)
    return _rows(rows_log, select, np.ones(int(select.sum())), history_log, max_len)


def impression_rows(rows_log: BehaviorLog, history_log: BehaviorLog, max_len: int) -> RecSamples:
    """Every impression of rows_log: views label 0, positive interactions label 1 (DIN's rows)."""
    starts = interaction_starts(rows_log)
    label = starts | (rows_log.event == CLICK)  # a re-click of the same item is still a clicked impression
    select = label | ~positive_mask(rows_log)
    return _rows(rows_log, select, label[select], history_log, max_len)


def add_sampled_negatives(samples: RecSamples, n_items: int, per_positive: int, seed: int = 0) -> RecSamples:
    """Append `per_positive` uniformly sampled non-interacted items (label 0) per label-1 row.

    A draw that hits the row's positive item or an item in its history is dropped (not redrawn):
    with a real catalogue that is rare, and dropping keeps it one vectorised pass.
    """
    if per_positive <= 0:
        return samples
    rng = np.random.default_rng(seed)
    src = np.repeat(np.flatnonzero(samples.label > 0), per_positive)
    cand = rng.integers(0, n_items, src.size).astype(np.int32)
    hist, length = samples.histories(src)
    in_hist = ((hist == cand[:, None]) & (np.arange(samples.max_len)[None, :] < length[:, None])).any(axis=1)
    keep = ~in_hist & (cand != samples.item[src])
    src, cand = src[keep], cand[keep]
    neg = samples.take(src)
    neg = replace(neg, item=cand, label=np.zeros(src.size, dtype=np.float32))
    out = concat(samples, neg)
    order = np.lexsort((out.timestamp, out.user))  # keep (user, time) order for readers that expect it
    return out.take(order)


def concat(a: RecSamples, b: RecSamples) -> RecSamples:
    """Rows of a then b; both must index the same history arrays."""
    if a.pos_item is not b.pos_item or a.max_len != b.max_len:
        raise ValueError("can only concatenate rows built on the same history log")
    return replace(
        a,
        user=np.concatenate([a.user, b.user]),
        item=np.concatenate([a.item, b.item]),
        label=np.concatenate([a.label, b.label]),
        timestamp=np.concatenate([a.timestamp, b.timestamp]),
        hist_start=np.concatenate([a.hist_start, b.hist_start]),
        hist_len=np.concatenate([a.hist_len, b.hist_len]),
    )


def model_ids(ids: np.ndarray, lengths: np.ndarray | None = None) -> torch.Tensor:
    """Dense indices -> int64 model ids shifted by ID_OFFSET; entries at positions >= lengths become 0 (padding).

    ids: [b] or [b, L]; lengths: [b] for 2-D ids.
    """
    out = np.asarray(ids).astype(np.int64) + ID_OFFSET
    if lengths is not None:
        out = np.where(np.arange(out.shape[1])[None, :] < np.asarray(lengths)[:, None], out, 0)
    return torch.from_numpy(out)


def next_item_rows(heldout_log: BehaviorLog, history_log: BehaviorLog, max_len: int) -> RecSamples:
    """Each user's first positive interaction in heldout_log, with the history_log positives before it.

    The retrieval evaluation rows (one per user that has a held-out item).
    """
    rows = target_rows(heldout_log, history_log, max_len)
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows.user[1:] != rows.user[:-1]
    return rows.take(np.flatnonzero(first))


def shard_batches(n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """This rank's shuffled mini-batches of row indices for one epoch.

    Every rank draws the same permutation (same seed) and takes every world-th row, cut to the same
    number of full batches on every rank, so DDP's collective calls line up.
    """
    perm = np.random.default_rng(seed).permutation(n)
    per_rank = n // world
    mine = perm[rank::world][:per_rank]
    n_batches = max(per_rank // batch_size, 1 if per_rank else 0)
    return [mine[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]


_DATA_CACHE: dict[tuple, tuple] = {}


def behavior_data(profile: str, seed: int, data_dir: Path | None) -> tuple[BehaviorLog, BehaviorOracle | None]:
    """The behaviour log (and the generator's oracle) for a run, cached in-process.

    data_dir None: generate the profile's data (`train all` reuses it for the second model);
    else load the directory (no oracle unless the directory was written by the generator).
    """
    key = (profile, seed, None if data_dir is None else str(Path(data_dir).resolve()))
    if key not in _DATA_CACHE:
        from training.data import behavior  # imported late: only needed on a cache miss

        if data_dir is None:
            _DATA_CACHE[key] = behavior.generate(behavior.PROFILES[profile], seed=seed)
        else:
            _DATA_CACHE[key] = behavior.load_dir(data_dir)
    return _DATA_CACHE[key]
