"""The TCN's inputs for /v1/forecast: stored recent sales (features/sales.npz) or the request's own history.

export writes features/sales.npz (export/features.py `sales_store`): per (store, item) series the last
`context_days` of units and, for those days plus the horizon, price, promotion and calendar events (the
horizon's plan: last price held, no promotion). The manifest's `forecast` section carries the TCN's
FeatureSpec, quantile levels and the calibration of period totals the replenishment advice uses
(serving/forecast/calibration.py; absent in artifacts exported before it: the advice then sums the
daily quantiles). The one feature definition, shared with training, is
serving/forecast/features.py.

A request's `history` replaces the stored units (and price/promo where sent) of a known series, or
forecasts a series the shop has not exported: its store and category are then looked up where known
(store ids, or the item's category in any store) and otherwise fed as "unknown" (id 0).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from serving.contracts.errors import InvalidInput
from serving.contracts.ids import IdMap
from serving.forecast.calibration import TotalsCalibration
from serving.forecast.features import FeatureSpec, StoredWindows, request_features
from serving.forecast.schemas import SalesHistory

SALES_FILE = "features/sales.npz"


@dataclass(frozen=True)
class ForecastInputs:
    """TCN inputs for one series, and what the answer needs to label the forecast days."""

    inputs: dict[str, np.ndarray]  # batch of 1, keyed by the TCN's input names
    first_date: dt.date | None  # date of the first forecast day
    quantile_levels: tuple[float, ...] = (0.1, 0.5, 0.9)
    calibration: TotalsCalibration | None = None  # of period totals, for the advice


class ForecastFeatureSource(Protocol):
    """Builds the TCN's inputs for (store, item) from the request's sales history or the stored recent
    sales (serving/forecast/source.py over export's features/sales.npz); without that file /v1/forecast
    answers 503. Raise InvalidInput naming the field for an unknown series or a history the model
    cannot use."""

    def build(self, store_id: int | str, item_id: int | str, history: SalesHistory | None) -> ForecastInputs: ...


def _date(value: np.ndarray | str) -> dt.date:
    return dt.date.fromisoformat(str(value))


class StoredSales:
    """ForecastFeatureSource over export's sales store."""

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        spec: FeatureSpec,
        quantiles: tuple[float, ...],
        calibration: TotalsCalibration | None = None,
    ):
        self.spec, self.quantiles, self.calibration = spec, quantiles, calibration
        if calibration is not None and (
            calibration.horizon != spec.horizon or not np.allclose(calibration.base_levels, quantiles)
        ):
            raise ValueError(
                f"the totals calibration ({calibration.horizon} days, levels {list(calibration.base_levels)}) does not "
                f"fit the TCN ({spec.horizon} days, levels {list(quantiles)}); re-run `python -m export`"
            )
        self.stores, self.items = IdMap(arrays["store_ids"]), IdMap(arrays["item_ids"])
        self.series_store = np.asarray(arrays["series_store"], dtype=np.int64)
        self.series_item = np.asarray(arrays["series_item"], dtype=np.int64)
        self.series_category = np.asarray(arrays["series_category"], dtype=np.int64)
        self.units = np.asarray(arrays["units"], dtype=np.float64)
        self.price = np.asarray(arrays["price"], dtype=np.float64)
        self.promo = np.asarray(arrays["promo"], dtype=np.float64)
        self.events = np.asarray(arrays["events"], dtype=np.float64)
        self.first_date = _date(arrays["first_date"])
        self.origin_date = _date(arrays["origin_date"])
        if tuple(str(e) for e in arrays["event_names"]) != spec.event_names:
            raise ValueError(
                f"sales store events {list(arrays['event_names'])} differ from the TCN's {spec.event_names}"
            )
        if self.price.shape[1] != self.units.shape[1] + spec.horizon:
            raise ValueError("sales store price must cover the stored days plus the horizon")
        # (store, item) -> series row, as one sorted int64 key for vectorised lookup.
        self._n_items = max(len(self.items), 1)
        keys = self.series_store * self._n_items + self.series_item
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]
        # Category of each item (any series of it), for a history-only request in a store without that item.
        self._item_category = np.full(len(self.items), -1, dtype=np.int64)
        self._item_category[self.series_item] = self.series_category
        # The stored series' windows, calendar, scales and reference prices, computed once instead of per request.
        self._windows = StoredWindows.prepare(
            self.units, self.price, self.promo, np.datetime64(self.first_date, "D"), self.events, spec
        )

    @classmethod
    def load(cls, path: str | Path, section: Mapping[str, Any]) -> StoredSales:
        """`section` is the manifest's `forecast` entry (feature_spec, quantiles[, totals_calibration])."""
        if not section.get("feature_spec"):
            raise ValueError("the manifest's forecast section has no feature_spec; re-run `python -m export`")
        spec = FeatureSpec.from_dict(dict(section["feature_spec"]))
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        raw = section.get("totals_calibration")
        calibration = TotalsCalibration.from_dict(raw) if raw else None
        return cls(arrays, spec, tuple(float(q) for q in section.get("quantiles", (0.1, 0.5, 0.9))), calibration)

    def __len__(self) -> int:
        return int(self.series_store.shape[0])

    def series(self, store: int, item: int) -> int | None:
        if store < 0 or item < 0:
            return None
        key = store * self._n_items + item
        pos = int(np.searchsorted(self._keys, key))
        return int(self._order[pos]) if pos < self._keys.size and self._keys[pos] == key else None

    def _stored_events(self, first: dt.date, n_days: int) -> np.ndarray:
        """Calendar events for n_days from `first`, where the stored window covers them; 0 elsewhere."""
        out = np.zeros((n_days, len(self.spec.event_names)))
        offset = (first - self.first_date).days
        lo, hi = max(offset, 0), min(offset + n_days, self.events.shape[0])
        if hi > lo:
            out[lo - offset : hi - offset] = self.events[lo:hi]
        return out

    def build(self, store_id: int | str, item_id: int | str, history: SalesHistory | None) -> ForecastInputs:
        store = int(self.stores.lookup([store_id])[0])
        item = int(self.items.lookup([item_id])[0])
        row = self.series(store, item)
        h = self.spec.horizon
        if history is None:
            if row is None:
                field = "store_id" if store < 0 else "item_id"
                raise InvalidInput(
                    [field], "no stored sales for this (store_id, item_id); send `history` to forecast it", "unknown_id"
                )
            inputs = self._windows.features(row, store, int(self.series_category[row]))
            origin = self.origin_date
        else:
            units, price, promo, first = self._from_history(history, row)
            origin = history.end_date
            events = self._stored_events(first, units.shape[1] + h)
            category = (
                self.series_category[row] if row is not None else (self._item_category[item] if item >= 0 else -1)
            )
            first_day = np.datetime64(first, "D")
            inputs = request_features(
                units, price, promo, first_day, events, np.array([store]), np.array([category]), self.spec
            )
        inputs = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
        return ForecastInputs(inputs, origin + dt.timedelta(days=1), self.quantiles, self.calibration)

    def _from_history(self, history: SalesHistory, row: int | None) -> tuple[np.ndarray, ...]:
        """The request's days as [1, P] units and [1, P + H] price / promo; unsent plan days hold the last
        price (the stored plan's, for a known series) and have no promotion."""
        p, h = len(history.units), self.spec.horizon
        units = np.array([[np.nan if u is None else u for u in history.units]], dtype=np.float64)
        price = np.full((1, p + h), np.nan)
        promo = np.zeros((1, p + h))
        # Planned days past this model's horizon (the schema allows MAX_HORIZON of them) are not used.
        sent_price = (history.price or [])[: p + h]
        sent_promo = (history.promo or [])[: p + h]
        price[0, : len(sent_price)] = [np.nan if v is None else v for v in sent_price]
        promo[0, : len(sent_promo)] = [0.0 if v is None else v for v in sent_promo]
        sent = len(sent_price)
        known = np.flatnonzero(np.isfinite(price[0, :sent]))
        if known.size:
            price[0, sent:] = price[0, known[-1]]
        elif row is not None:
            price[0, :] = self.price[row, -1]  # no price sent: the series' stored plan price
        first = history.end_date - dt.timedelta(days=p - 1)
        return units, price, promo, first
