"""Feature lookup and model-input assembly for the recommendation models (numpy, vectorised).

The gateway speaks the shop's ids; the models speak dense indices (serving/contracts/ids.py).
The tables come from export as .npz files under artifacts/ (no pickle: string ids are
numpy unicode arrays):

    features/items.npz   item_ids [n] (int64 or str)   category [n] int, 0-based
                         popularity [n] float (optional; higher = more popular; the cold-start list)
                         available [n] bool (optional; false = out of stock, never recommended)
                         brand [n] int, price [n] float, price_bucket [n] int (optional; the item tower's
                         inputs, which the online catalogue needs to embed a changed or added item)
                         category_vocab, brand_vocab (optional; the shop's category / brand id of each
                         index; without them the shop's ids are the indices), price_bucket_edges (optional)
    features/users.npz   user_ids [u]   hist_offsets [u + 1] int64   hist_items [nnz] int64 item indices,
                         oldest first (user i's history = hist_items[hist_offsets[i]:hist_offsets[i + 1]])
                         user_features [u, F] int64 (optional; raw category codes, -1 = unknown)

Model inputs follow serving/contracts/model_specs.py: ids shifted by +1 so 0 is padding/unknown, histories
left-aligned and right-padded, `hist_len` the real length. Items added online (serving/recommend/catalogue.py)
come after the `known` ones the models were trained on: the models see them as the unknown item (id 0), with
their category; a category the models never saw is -1 here, so 0 for the models too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.contracts.ids import ID_OFFSET, IdMap

ITEMS_FILE = "features/items.npz"
USERS_FILE = "features/users.npz"


@dataclass
class ItemTable:
    ids: IdMap
    category: np.ndarray  # int64 [n], 0-based
    popularity: np.ndarray | None = None  # float [n]
    available: np.ndarray | None = None  # bool [n]
    brand: np.ndarray | None = None  # int64 [n], 0-based, -1 = unknown to the models
    price: np.ndarray | None = None  # float [n]
    known: int | None = None  # set once items were added online: 0..known-1 are the models' own
    popular_order: np.ndarray | None = None  # item indices, most popular first; default: sorted here

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("category", "popularity", "available", "brand", "price", "popular_order"):
            a = getattr(self, name)
            if a is not None and a.shape != (n,):
                raise ValueError(f"items.{name} has shape {a.shape}, expected ({n},)")
        if self.popular_order is None:  # the cold-start list, computed once
            pop = self.popularity if self.popularity is not None else np.zeros(n)
            self.popular_order = np.argsort(-pop, kind="stable")
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

    def popular_in(self, categories: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """The most popular available items of `categories` first, then the most popular of the rest."""
        order = self.popular(len(self), exclude)
        mine = np.isin(self.category[order], categories)
        return np.concatenate([order[mine], order[~mine]])[:k]


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
                f["brand"].astype(np.int64) if "brand" in f else None,
                f["price"].astype(np.float64) if "price" in f else None,
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


def model_item_ids(index: np.ndarray, known: int | None) -> np.ndarray:
    """Item indices as the models' ids: index + 1, and 0 (unknown) for items added after the models."""
    ids = index + ID_OFFSET
    return ids if known is None else np.where(index < known, ids, 0)


def history_inputs(
    history: np.ndarray, category: np.ndarray, rows: int, max_len: int | None, known: int | None = None
) -> dict[str, np.ndarray]:
    """One history (item indices, oldest first) as `rows` identical model rows: the most recent `max_len`
    items, shifted ids, categories and the real length. Rows are broadcast views, not copies."""
    h = history[-max_len:] if max_len else history
    width = max(h.shape[0], 1)  # an empty history still has one (padding) position
    ids = np.zeros(width, dtype=np.int64)
    cats = np.zeros(width, dtype=np.int64)
    ids[: h.shape[0]] = model_item_ids(h, known)
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
    out = history_inputs(history, items.category, 1, max_len, items.known)
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
    out = history_inputs(history, items.category, rows, max_len, items.known)
    out["cand_item_ids"] = model_item_ids(candidates, items.known)
    out["cand_cat_ids"] = items.category[candidates] + ID_OFFSET
    if user_features is not None:
        out["user_features"] = np.broadcast_to(user_features, (rows, user_features.shape[0]))
    return out
