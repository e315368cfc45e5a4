"""The TCN's inputs for one stored (store, item) series at many candidate prices: one row per price, or
(`plans_at`) one row with a plan per price for the plans model (model_specs.TCN_PLANS, the past built once).

Reads the forecast capability's sales store (serving/forecast/source.py `StoredSales`, export's
features/sales.npz): the stored window of units, prices, promotions and calendar. Every row has the same
past; only the plan differs: the candidate is the shelf price on every forecast day, with no promotion.
The reference price (features.py) comes from the past days only, so it is the same in every row and
the model sees log(candidate / reference) as its price channel.

The current price is the last stored price of a day without promotion (the regular shelf price; the
last stored price when every day was on promotion). The range seen in training is the series' own
lowest and highest stored price: the model has seen this series sell at those prices.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from serving.contracts.errors import InvalidInput
from serving.forecast.features import plan_features, request_features
from serving.forecast.source import SALES_FILE, StoredSales

__all__ = ["SALES_FILE", "PricedSeries", "StoredSales", "priced_series"]


@dataclass(frozen=True)
class PricedSeries:
    sales: StoredSales
    row: int
    current_price: float
    seen_low: float
    seen_high: float

    @property
    def first_date(self) -> dt.date:
        return self.sales.origin_date + dt.timedelta(days=1)

    def inputs_at(self, prices: np.ndarray) -> dict[str, np.ndarray]:
        """The TCN's named inputs, one row per price [B]."""
        s, r = self.sales, self.row
        b, p = len(prices), s.units.shape[1]
        units = np.repeat(s.units[r : r + 1], b, axis=0)
        price = np.repeat(s.price[r : r + 1], b, axis=0)
        promo = np.repeat(s.promo[r : r + 1], b, axis=0)
        price[:, p:] = np.asarray(prices, dtype=np.float64)[:, None]
        promo[:, p:] = 0.0
        store = np.full(b, s.series_store[r])
        category = np.full(b, s.series_category[r])
        inputs = request_features(
            units, price, promo, np.datetime64(s.first_date, "D"), s.events, store, category, s.spec
        )
        return {k: np.ascontiguousarray(v) for k, v in inputs.items()}

    def plans_at(self, prices: np.ndarray) -> dict[str, np.ndarray]:
        """The plans model's named inputs: one row, the past once and a plan per price [1, K, ...]; plan k
        equals row k of `inputs_at` (the candidate as the shelf price on every forecast day, no promotion)."""
        s, r = self.sales, self.row
        shape = (len(prices), s.price.shape[1] - s.units.shape[1])
        plan = np.broadcast_to(np.asarray(prices, dtype=np.float64)[:, None], shape)
        inputs = plan_features(
            s.units[r],
            s.price[r],
            s.promo[r],
            plan,
            np.zeros(shape),
            np.datetime64(s.first_date, "D"),
            s.events,
            int(s.series_store[r]),
            int(s.series_category[r]),
            s.spec,
        )
        return {k: np.ascontiguousarray(v) for k, v in inputs.items()}


def priced_series(sales: StoredSales, store_id: int | str, item_id: int | str) -> PricedSeries:
    """The stored series of (store, item) with its current price and seen range; 422 naming the field when
    there is none (pricing needs the series' own sales, so a request cannot bring a history)."""
    store = int(sales.stores.lookup([store_id])[0])
    item = int(sales.items.lookup([item_id])[0])
    row = sales.series(store, item)
    if row is None:
        field = "store_id" if store < 0 else "item_id"
        raise InvalidInput([field], "no stored sales for this (store_id, item_id)", "unknown_id")
    p = sales.units.shape[1]
    price, promo = sales.price[row, :p], sales.promo[row, :p]
    known = np.isfinite(price) & (price > 0)
    if not known.any():
        raise InvalidInput(["item_id"], "this series has no known price to start from", "value_error")
    regular = known & ~(promo > 0)
    last = np.flatnonzero(regular if regular.any() else known)[-1]
    # Stored prices are float32: round off its noise (16.540000915...) at a hundredth of a cent.
    low, high, current = (round(float(v), 4) for v in (price[known].min(), price[known].max(), price[last]))
    return PricedSeries(sales, row, current, low, high)
