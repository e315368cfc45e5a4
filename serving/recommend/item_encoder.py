"""The exported item tower in the gateway: item fields -> the vector the FAISS index holds for the item.

Export runs the item tower over the whole catalogue into the index; the gateway runs it only for items the
catalogue adds or changes online (POST /v1/items), a few at a time and off the request path. So it is an ONNX
Runtime session of its own on one thread (the item tower is not a repository model: Triton never serves it),
on export's file (artifacts/models/item_tower/model.onnx, named in the manifest).

`ItemCoding` turns the shop's values into the tower's inputs the way export did: category and brand ids
through export's vocabularies (a value the models never saw is the unknown id, 0), price into the two-tower's
price buckets (export's edges; for older artifacts without them, the edges recovered from the exported
buckets, which reproduce every exported item's bucket). An item without a price gets the middle bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.contracts.ids import ID_OFFSET, IdMap

ITEM_TOWER_FILE = "models/item_tower/model.onnx"
OUTPUT = "item_embedding"


@dataclass(frozen=True)
class ItemCoding:
    categories: IdMap  # shop category id -> category index
    brands: IdMap | None  # shop brand id -> brand index (None: the export had no brands)
    price_edges: np.ndarray | None  # inner bucket edges (None: no price input)

    @classmethod
    def from_npz(cls, items: dict[str, np.ndarray]) -> ItemCoding:
        """From features/items.npz's arrays."""
        cat = items["category"].astype(np.int64)
        categories = IdMap(items["category_vocab"] if "category_vocab" in items else np.arange(cat.max(initial=-1) + 1))
        brands = None
        if "brand_vocab" in items:
            brands = IdMap(items["brand_vocab"])
        elif "brand" in items:
            brands = IdMap(np.arange(items["brand"].astype(np.int64).max(initial=-1) + 1))
        edges = items.get("price_bucket_edges")
        if edges is None and "price_bucket" in items and "price" in items:
            edges = _recovered_edges(items["price"].astype(np.float64), items["price_bucket"].astype(np.int64))
        return cls(categories, brands, None if edges is None else np.asarray(edges, np.float64))

    def category(self, values: Sequence[int | str]) -> np.ndarray:
        """Category indices of shop category ids; -1 for one the models never saw."""
        return self.categories.lookup(values)

    def brand(self, values: Sequence[int | str]) -> np.ndarray:
        return self.brands.lookup(values) if self.brands is not None else np.full(len(values), -1, np.int64)

    def price_bucket(self, price: np.ndarray) -> np.ndarray:
        """Buckets of prices (NaN: no price known -> the middle bucket)."""
        if self.price_edges is None:
            return np.zeros(price.shape[0], np.int64)
        buckets = np.searchsorted(self.price_edges, price, side="right").astype(np.int64)
        return np.where(np.isnan(price), (self.price_edges.size + 1) // 2, buckets)


def _recovered_edges(price: np.ndarray, bucket: np.ndarray) -> np.ndarray | None:
    """Edges e_b = the lowest price in bucket b (b >= 1): searchsorted(side='right') then gives every exported
    item its bucket back. Buckets no item fell into borrow the next edge (they could not be told apart)."""
    n = int(bucket.max(initial=0)) + 1
    if n <= 1:
        return None
    lows = np.full(n, np.inf)
    np.minimum.at(lows, bucket, price)
    edges = lows[1:]
    for b in range(edges.size - 2, -1, -1):  # a handful of buckets
        if not np.isfinite(edges[b]):
            edges[b] = edges[b + 1]
    return edges


class ItemEncoder:
    def __init__(self, path: str | Path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # a few rows at a time, beside the serving models
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.path = Path(path)

    def encode(
        self, model_item_ids: np.ndarray, category: np.ndarray, brand: np.ndarray, price_bucket: np.ndarray
    ) -> np.ndarray:
        """Vectors [n, d] of items: model item ids (0 = unknown), category and brand indices (-1 = unknown)."""
        feeds = {
            "item_ids": model_item_ids.astype(np.int64),
            "cat_ids": (category.astype(np.int64) + ID_OFFSET).clip(min=0),
            "brand_ids": (brand.astype(np.int64) + ID_OFFSET).clip(min=0),
            "price_bucket": price_bucket.astype(np.int64),
        }
        names = {i.name for i in self.session.get_inputs()}
        return np.asarray(self.session.run([OUTPUT], {k: v for k, v in feeds.items() if k in names})[0], np.float32)
