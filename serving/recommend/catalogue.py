"""The catalogue as it is now: export's item table and index, with the items the shop added or changed since.

POST /v1/items writes changes to the online store (serving/runtime/online_store: in this process, or on a
Redis every gateway shares); each process applies them in order onto its export (`LiveCatalogue.sync`) into a
new immutable `CatalogueView`, swapped in whole, so a request reads one consistent view:

- an added item gets the next index; the models see it as the unknown item (id 0) with its category, brand
  and price bucket, which is what the item tower embeds it from, into the delta index (live_index.py);
- a known item whose category, brand or price changed is embedded again (it keeps its index and id, so DIN
  still knows it);
- `in_stock: false` or a delete blocks the item in every list at once (retrieval, popular, exploration).

A user read returns the store's catalogue version, so /v1/recommend syncs first when another process wrote
(read-your-writes across processes); POST /v1/items syncs before it answers. A reload starts the new export
from version 0 and applies every change again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from serving.contracts.ids import IdMap
from serving.recommend.features import FeatureStore, ItemTable, model_item_ids
from serving.recommend.item_encoder import ItemCoding, ItemEncoder
from serving.recommend.live_index import Delta, LiveIndex
from serving.recommend.retrieval import Retriever
from serving.runtime.online_store import CatalogueChanges, OnlineStore
from serving.runtime.registry import Artifacts


class ExtendedIds(IdMap):
    """Export's id map with the ids added online after it (indices len(base)...); lookups stay vectorised."""

    def __init__(self, base: IdMap, added: np.ndarray):
        self.base, self.is_int = base, base.is_int
        self.added = IdMap(added.astype(np.int64) if base.is_int else added.astype(str))
        self._n_base = len(base)

    def __len__(self) -> int:
        return self._n_base + len(self.added)

    def lookup(self, values: Sequence[int | str]) -> np.ndarray:
        index = self.base.lookup(values)
        miss = np.flatnonzero(index < 0)
        if miss.size and len(self.added):
            extra = self.added.lookup(np.asarray(values)[miss])
            index[miss] = np.where(extra >= 0, extra + self._n_base, -1)
        return index

    def to_shop(self, index: np.ndarray) -> list[int | str]:
        index = np.asarray(index, dtype=np.int64)
        out = np.empty(index.shape[0], dtype=object)
        base = index < self._n_base
        out[base] = self.base.to_shop(index[base])
        out[~base] = self.added.to_shop(index[~base] - self._n_base)
        return out.tolist()


@dataclass(frozen=True)
class CatalogueView:
    version: int  # of the online store's catalogue, applied
    features: FeatureStore
    index: LiveIndex | Retriever | None  # export's retriever until an item is embedded online
    added: tuple[str, ...] = ()  # shop ids (text) of the items added online, in index order

    @property
    def delta(self) -> Delta | None:
        return self.index.delta if isinstance(self.index, LiveIndex) else None


class LiveCatalogue:
    """The current view of one export's catalogue, and how the store's changes reach it."""

    def __init__(
        self, features: FeatureStore, retriever: Retriever | None, encoder: ItemEncoder | None, coding: ItemCoding
    ):
        self.retriever, self.encoder, self.coding = retriever, encoder, coding
        self.base_items = len(features.items)
        self.view = CatalogueView(0, features, retriever)
        self._lock = asyncio.Lock()

    async def sync(self, store: OnlineStore, version: int | None = None) -> CatalogueView:
        """The view with every change up to `version` (None: the store's latest) applied."""
        if version is not None and version <= self.view.version:
            return self.view
        async with self._lock:  # one fetch and one rebuild for all the requests that wait on it
            if version is None or version > self.view.version:
                changes = await store.items_since(self.view.version)
                if changes.items:
                    self.view = await asyncio.to_thread(self.apply, changes)
                elif changes.version > self.view.version:
                    self.view = replace(self.view, version=changes.version)
        return self.view

    def apply(self, changes: CatalogueChanges) -> CatalogueView:
        """A new view: the current one with the changed items' merged fields (CPU work: a worker thread)."""
        view, coding = self.view, self.coding
        items = view.features.items
        names = list(changes.items)
        found = items.ids.lookup(names)
        added = [n for n, i in zip(names, found, strict=True) if i < 0 and _can_add(changes.items[n])]
        n_old = len(items)
        index = np.concatenate([found[found >= 0], n_old + np.arange(len(added))])
        fields = [changes.items[n] for n, i in zip(names, found, strict=True) if i >= 0] + [
            changes.items[n] for n in added
        ]
        grow = len(added)
        category = _grown(items.category, grow, -1)
        brand = _grown(items.brand if items.brand is not None else np.full(n_old, -1), grow, -1)
        price = _grown(items.price if items.price is not None else np.full(n_old, np.nan), grow, np.nan)
        available = _grown(items.available if items.available is not None else np.ones(n_old, bool), grow, True)
        popularity = _grown(items.popularity if items.popularity is not None else np.zeros(n_old), grow, 0.0)
        before = (category[index].copy(), brand[index].copy(), price[index].copy())
        for i, f in zip(index.tolist(), fields, strict=True):  # one item per write: writes are few
            if "category_id" in f:
                category[i] = coding.category([f["category_id"]])[0]
            if "brand_id" in f:
                brand[i] = coding.brand([f["brand_id"]])[0]
            if "price" in f:
                price[i] = math.nan if f["price"] is None else float(f["price"])
            available[i] = bool(f.get("in_stock", True)) and not f.get("deleted", False)
        changed = (category[index] != before[0]) | (brand[index] != before[1]) | ~_same(price[index], before[2])
        changed |= index >= n_old  # an added item needs its first vector
        ids = items.ids if not grow else _extend_ids(items.ids, view.added, added)
        order = _popular_order(items, grow)
        table = ItemTable(ids, category, popularity, available, brand, price, self.base_items, order)
        features = FeatureStore(table, view.features.users)
        live = view.index
        embed = index[changed]
        if embed.size and self.retriever is not None and self.encoder is not None:
            vectors = self.encoder.encode(
                model_item_ids(embed, self.base_items),
                category[embed],
                brand[embed],
                coding.price_bucket(price[embed]),
            )
            delta = (view.delta or Delta.empty(self.retriever.dim)).with_vectors(embed, vectors)
            live = LiveIndex(self.retriever, delta)
        return CatalogueView(changes.version, features, live, view.added + tuple(added))


def current_features(artifacts: Artifacts) -> FeatureStore:
    """The feature tables of the catalogue view this process has (no store round trip), else export's."""
    catalogue: LiveCatalogue | None = artifacts.parts.get("catalogue")
    return catalogue.view.features if catalogue is not None else artifacts.need("features")


def _can_add(fields: Mapping[str, Any]) -> bool:
    """An item unknown here is added when it has a category (the store's merged fields always do, unless it was
    deleted before any process added it)."""
    return fields.get("category_id") is not None and not fields.get("deleted", False)


def _popular_order(items: ItemTable, grow: int) -> np.ndarray:
    """The popular order with `grow` added items (popularity 0) where a stable sort would put them: after every
    item as popular or more, in index order (no sort of the whole catalogue per write)."""
    order = items.popular_order
    if not grow:
        return order
    pop = items.popularity if items.popularity is not None else np.zeros(len(items))
    at = int(np.searchsorted(-pop[order], 0.0, side="right"))
    return np.concatenate([order[:at], len(items) + np.arange(grow), order[at:]])


def _grown(a: np.ndarray, n: int, fill: Any) -> np.ndarray:
    """A copy of `a` with `n` more entries of `fill` (a copy even for n = 0: views are never written to)."""
    return np.concatenate([a, np.full(n, fill, dtype=a.dtype)])


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _extend_ids(ids: IdMap, had: tuple[str, ...], new: list[str]) -> ExtendedIds:
    base = ids.base if isinstance(ids, ExtendedIds) else ids
    return ExtendedIds(base, np.asarray(list(had) + new))
