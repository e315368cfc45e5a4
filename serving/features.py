"""Feature lookup and model-input assembly for the recommendation models (numpy, vectorised).

The gateway speaks the shop's ids; the models speak dense indices. `IdMap` translates a whole
request's ids at once (sorted keys + searchsorted, no per-id Python work beyond building the array).
The tables come from export (issue 5) as .npz files under artifacts/ (no pickle: string ids are
numpy unicode arrays):

    features/items.npz   item_ids [n] (int64 or str)   category [n] int, 0-based
                         popularity [n] float (optional; higher = more popular; the cold-start list)
                         available [n] bool (optional; false = out of stock, never recommended)
    features/users.npz   user_ids [u]   hist_offsets [u + 1] int64   hist_items [nnz] int64 item indices,
                         oldest first (user i's history = hist_items[hist_offsets[i]:hist_offsets[i + 1]])
                         user_features [u, F] int64 (optional; raw category codes, -1 = unknown)

Model inputs follow serving/model_specs.py: ids shifted by +1 so 0 is padding/unknown, histories
left-aligned and right-padded, `hist_len` the real length.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from serving.errors import InvalidInput
from serving.schemas import SalesHistory

ITEMS_FILE = "features/items.npz"
USERS_FILE = "features/users.npz"
ID_OFFSET = 1  # model ids = index + 1; 0 = padding / unknown


class IdMap:
    """Shop ids (all integers, or all strings) <-> model indices 0..n-1."""

    def __init__(self, ids: np.ndarray):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError("ids must be one-dimensional")
        self.is_int = ids.dtype.kind in "iu"
        self._ids = ids.astype(np.int64) if self.is_int else ids.astype(str)
        self._order = np.argsort(self._ids, kind="stable")
        self._sorted = self._ids[self._order]
        if self._sorted.size > 1 and np.any(self._sorted[1:] == self._sorted[:-1]):
            raise ValueError("ids must be unique")

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def _keys(self, values: Sequence[int | str]) -> tuple[np.ndarray, np.ndarray]:
        """Request ids as the map's key type, and which of them could be converted at all."""
        arr = np.asarray(values)  # a mixed int/str list arrives as strings, which is what the maps compare
        if self.is_int and arr.dtype.kind in "iu":
            return arr.astype(np.int64), np.ones(arr.shape[0], dtype=bool)
        text = arr.astype(str)
        if not self.is_int:
            return text, np.ones(arr.shape[0], dtype=bool)
        # An integer catalogue also answers to "123"; anything else cannot name one of its items.
        digits = np.char.isdigit(text) & (np.char.str_len(text) <= 18)
        keys = np.zeros(arr.shape[0], dtype=np.int64)
        keys[digits] = text[digits].astype(np.int64)
        return keys, digits

    def lookup(self, values: Sequence[int | str]) -> np.ndarray:
        """-> int64 model indices, -1 where the id is unknown."""
        if len(values) == 0 or len(self) == 0:
            return np.full(len(values), -1, dtype=np.int64)
        keys, ok = self._keys(values)
        pos = np.clip(np.searchsorted(self._sorted, keys), 0, len(self) - 1)
        hit = ok & (self._sorted[pos] == keys)
        return np.where(hit, self._order[pos], -1).astype(np.int64)

    def require(self, values: Sequence[int | str], field: str) -> np.ndarray:
        """lookup, with a 422 naming the first unknown id's position."""
        index = self.lookup(values)
        unknown = np.flatnonzero(index < 0)
        if unknown.size:
            i = int(unknown[0])
            more = f" (and {unknown.size - 1} more)" if unknown.size > 1 else ""
            raise InvalidInput([field, i], f"unknown id {values[i]!r}{more}", "unknown_id")
        return index

    def to_shop(self, index: np.ndarray) -> list[int | str]:
        return self._ids[np.asarray(index, dtype=np.int64)].tolist()


@dataclass
class ItemTable:
    ids: IdMap
    category: np.ndarray  # int64 [n], 0-based
    popularity: np.ndarray | None = None  # float [n]
    available: np.ndarray | None = None  # bool [n]

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("category", "popularity", "available"):
            a = getattr(self, name)
            if a is not None and a.shape != (n,):
                raise ValueError(f"items.{name} has shape {a.shape}, expected ({n},)")
        pop = self.popularity if self.popularity is not None else np.zeros(n)
        self.popular_order = np.argsort(-pop, kind="stable")  # cold-start list, computed once
        self.blocked = None if self.available is None else ~self.available.astype(bool)

    def __len__(self) -> int:
        return len(self.ids)

    def popular(self, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """The k most popular available item indices, leaving out `exclude`."""
        order = self.popular_order
        keep = np.ones(order.shape[0], dtype=bool)
        if self.blocked is not None:
            keep &= ~self.blocked[order]
        if exclude is not None and exclude.size:
            keep &= ~np.isin(order, exclude)
        return order[keep][:k]


@dataclass
class UserTable:
    ids: IdMap
    hist_offsets: np.ndarray  # int64 [u + 1]
    hist_items: np.ndarray  # int64 [nnz]
    features: np.ndarray | None = None  # int64 [u, F], -1 = unknown

    def history(self, user: int) -> np.ndarray:
        return self.hist_items[self.hist_offsets[user] : self.hist_offsets[user + 1]]

    def feature_row(self, user: int | None, n_features: int) -> np.ndarray:
        """Model encoding (code + 1, 0 = unknown) of one user's features; zeros for an unknown user."""
        if user is None or user < 0 or self.features is None:
            return np.zeros(n_features, dtype=np.int64)
        return (self.features[user].astype(np.int64) + ID_OFFSET).clip(min=0)


@dataclass
class FeatureStore:
    items: ItemTable
    users: UserTable | None = None

    @classmethod
    def load(cls, artifacts: str | Path) -> FeatureStore:
        root = Path(artifacts)
        with np.load(root / ITEMS_FILE, allow_pickle=False) as f:
            items = ItemTable(
                IdMap(f["item_ids"]),
                f["category"].astype(np.int64),
                f["popularity"].astype(np.float64) if "popularity" in f else None,
                f["available"].astype(bool) if "available" in f else None,
            )
        users = None
        if (root / USERS_FILE).is_file():
            with np.load(root / USERS_FILE, allow_pickle=False) as f:
                users = UserTable(
                    IdMap(f["user_ids"]),
                    f["hist_offsets"].astype(np.int64),
                    f["hist_items"].astype(np.int64),
                    f["user_features"].astype(np.int64) if "user_features" in f else None,
                )
        return cls(items, users)

    def user_features(self, user: int | None, n_features: int) -> np.ndarray:
        """Model encoding of a user's features; zeros (= unknown) without a user or a user table."""
        if self.users is None:
            return np.zeros(n_features, dtype=np.int64)
        return self.users.feature_row(user, n_features)

    def user_index(self, user_id: int | str | None) -> int | None:
        if user_id is None or self.users is None:
            return None
        idx = int(self.users.ids.lookup([user_id])[0])
        return idx if idx >= 0 else None


def history_inputs(history: np.ndarray, category: np.ndarray, rows: int, max_len: int | None) -> dict[str, np.ndarray]:
    """One history (item indices, oldest first) as `rows` identical model rows: the most recent `max_len`
    items, shifted ids, categories and the real length. Rows are broadcast views, not copies."""
    h = history[-max_len:] if max_len else history
    width = max(h.shape[0], 1)  # an empty history still has one (padding) position
    ids = np.zeros(width, dtype=np.int64)
    cats = np.zeros(width, dtype=np.int64)
    ids[: h.shape[0]] = h + ID_OFFSET
    cats[: h.shape[0]] = category[h] + ID_OFFSET
    return {
        "hist_item_ids": np.broadcast_to(ids, (rows, width)),
        "hist_cat_ids": np.broadcast_to(cats, (rows, width)),
        "hist_len": np.full(rows, h.shape[0], dtype=np.int64),
    }


def user_tower_inputs(
    history: np.ndarray, items: ItemTable, max_len: int | None, user_features: np.ndarray | None
) -> dict[str, np.ndarray]:
    """One row for the user tower."""
    out = history_inputs(history, items.category, 1, max_len)
    if user_features is not None:
        out["user_features"] = user_features[None, :]
    return out


def din_inputs(
    history: np.ndarray,
    candidates: np.ndarray,
    items: ItemTable,
    max_len: int | None,
    user_features: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """One DIN row per candidate: the user's history repeated (broadcast), the candidate's ids."""
    rows = candidates.shape[0]
    out = history_inputs(history, items.category, rows, max_len)
    out["cand_item_ids"] = candidates + ID_OFFSET
    out["cand_cat_ids"] = items.category[candidates] + ID_OFFSET
    if user_features is not None:
        out["user_features"] = np.broadcast_to(user_features, (rows, user_features.shape[0]))
    return out


@dataclass(frozen=True)
class ForecastInputs:
    """TCN inputs for one series, and what the answer needs to label the forecast days."""

    inputs: dict[str, np.ndarray]  # batch of 1, keyed by the TCN's input names
    first_date: dt.date | None  # date of the first forecast day
    quantile_levels: tuple[float, ...] = (0.1, 0.5, 0.9)


class ForecastFeatureSource(Protocol):
    """Builds the TCN's inputs for (store, item) from the request's sales history or the stored recent
    sales (serving/forecast_source.py over export's features/sales.npz); without that file /v1/forecast
    answers 503. Raise InvalidInput naming the field for an unknown series or a history the model
    cannot use."""

    def build(self, store_id: int | str, item_id: int | str, history: SalesHistory | None) -> ForecastInputs: ...
