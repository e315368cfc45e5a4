"""In-memory forms shared by the generators, the loaders of users' own files, training and export.

All arrays are numpy; ids inside these forms are dense model indices (0..n-1). The shop's own ids
(strings or integers) are kept in the `*_ids` arrays, where position = model index, so export can
write id maps and the gateway can speak the shop's ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from serving.contracts.ids import ID_OFFSET as ID_OFFSET  # re-exported: the one id convention

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "buy")
# Taobao UserBehavior's behavior_type values mapped onto EVENT_TYPES.
TAOBAO_EVENT_MAP: dict[str, str] = {"pv": "view", "fav": "click", "cart": "cart", "buy": "buy"}
# Forms hold indices 0..n-1. Models shift ids by ID_OFFSET (+1) in their embedding tables so that 0
# means padding / unknown id; the shift happens in the model's input building, never in these forms.


@dataclass
class Catalogue:
    """Items and their features. Index i is model item index i."""

    category: np.ndarray  # int32 [n_items], 0..n_categories-1
    brand: np.ndarray  # int32 [n_items], 0..n_brands-1
    price: np.ndarray  # float32 [n_items], > 0
    n_categories: int
    n_brands: int
    item_ids: np.ndarray  # [n_items] the shop's own item ids (int64 or str objects)
    # The shop's category / brand id of each index (None: the ids are the indices, as in the generator).
    category_ids: np.ndarray | None = None
    brand_ids: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return int(self.category.shape[0])


@dataclass
class BehaviorLog:
    """Interaction events, sorted by (user, timestamp).

    event: int8 index into EVENT_TYPES. timestamp: int64 unix seconds.
    user_features: optional int32 [n_users, n_user_features] categorical user attributes.
    """

    user: np.ndarray  # int32 [n_events]
    item: np.ndarray  # int32 [n_events]
    event: np.ndarray  # int8 [n_events]
    timestamp: np.ndarray  # int64 [n_events]
    catalogue: Catalogue
    user_ids: np.ndarray  # [n_users] the shop's own user ids
    user_features: np.ndarray | None = None
    user_feature_cardinalities: tuple[int, ...] = ()

    @property
    def n_events(self) -> int:
        return int(self.user.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def category(self) -> np.ndarray:
        return self.catalogue.category[self.item]


class BehaviorOracle(Protocol):
    """Ground truth of the behaviour generator (only generated data has one)."""

    def click_prob(self, user: np.ndarray, hist: np.ndarray, hist_len: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """True probability that `user` [B] with positive history `hist` [B, L] clicks candidate item
        `cand` [B] when it is shown. -> float [B].

        History rows are left-aligned item indices, oldest first; entries at positions >= `hist_len`
        [B] are ignored. "Positive" = click, cart or buy (views are not history)."""
        ...

    def next_item_scores(self, user: np.ndarray, hist: np.ndarray, hist_len: np.ndarray) -> np.ndarray:
        """True (unnormalised log-) probability of every item being the user's next click. -> [B, n_items]."""
        ...


@dataclass
class SalesPanel:
    """Daily sales, one row per series (store x item), one column per day.

    units: float32 [n_series, n_days] (NaN before an item's launch).
    price: float32 [n_series, n_days]; promo: float32 [n_series, n_days] in [0, 1].
    events: int8 [n_days, n_event_types] calendar events/holidays (known in advance).
    expected: float32 [n_series, n_days] true expected demand, generated data only.
    """

    units: np.ndarray
    price: np.ndarray
    promo: np.ndarray
    start_date: np.datetime64
    store: np.ndarray  # int32 [n_series]
    item: np.ndarray  # int32 [n_series]
    category: np.ndarray  # int32 [n_series]
    store_ids: np.ndarray  # [n_stores] the shop's own store ids
    item_ids: np.ndarray  # [n_items] the shop's own item ids
    events: np.ndarray
    event_names: tuple[str, ...] = ()
    expected: np.ndarray | None = None
    category_ids: np.ndarray | None = None  # [n_categories] the shop's own category ids, when known

    @property
    def n_series(self) -> int:
        return int(self.units.shape[0])

    @property
    def n_days(self) -> int:
        return int(self.units.shape[1])

    @property
    def dates(self) -> np.ndarray:
        return self.start_date + np.arange(self.n_days).astype("timedelta64[D]")


@dataclass
class IntentDataset:
    """Labelled utterances. label: int64 [n] index into `labels`."""

    texts: list[str]
    label: np.ndarray
    labels: tuple[str, ...]
    source: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)
