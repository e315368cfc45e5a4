"""Loader for the shop's own daily sales files (CSV or Parquet) -> `SalesPanel`.

Schema (column names case-insensitive, any order, extra columns ignored):

sales     store_id, item_id, date, units[, price][, promo][, category_id]
          one row per store, item and day; date ISO (2024-05-31); units >= 0 (fractions allowed);
          price > 0 (empty cell = unknown); promo in [0, 1] (a 0/1 flag or a discount share;
          true/false accepted; empty = 0); category_id is used when no items file is given.
calendar  date, <event>...  (optional) every other column is an event flag 0/1, named by its header.
items     item_id, category_id  (optional) one row per item.

How a long file becomes a panel (one row per store x item series, one column per day):
- the panel runs from the earliest to the latest date in the sales file;
- a series starts at its first row: days before it are NaN (item not launched there yet), and a
  day without a row after it counts as 0 units (no sale), up to the end of the panel;
- price on a day without a known price is the series' last known price (the first known price
  before that, 1.0 when the series never has one); promo is 0 on days without a row;
- series are ordered by (store_id, item_id) and ids by their sorted order (integers numerically
  when every id of a column is a plain integer, else as text), so the generator's files load back
  in the generator's order;
- calendar days outside the panel are ignored; panel days missing from the calendar have no events
  (counted in a warning); without a calendar there are no events; without categories every item
  is in category 0.

Bad input fails with `DataFileError` naming file, line and column: missing column, empty file, wrong
type, negative units, bad price or promo, unparsable date, duplicate (store, item, date) rows,
duplicate calendar dates or items, items absent from the items file. No row is ever dropped, except
blank lines of a CSV, which are counted in a warning. Lines are 1-based file lines for CSV (the
header is line 1; exact unless a quoted cell spans lines) and 1-based row numbers for Parquet.
Files are read by `training.data.table_io`, the reader both loaders share (encodings, line ends,
repeated column names, Parquet errors).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.schema import SalesPanel
from training.data.table_io import Table, read_table

log = logging.getLogger(__name__)

SALES_COLUMNS = ("store_id", "item_id", "date", "units")
OPTIONAL_SALES_COLUMNS = ("price", "promo", "category_id")
DEFAULT_PRICE = 1.0  # a series that never states a price
_CANONICAL_INT = re.compile(r"-?(0|[1-9]\d*)")  # "007" stays text so that ids write back unchanged


def _read(path: str | Path) -> Table:
    """The shared reader (`table_io`): the header is the first line; blank lines are skipped and counted
    in a warning on this module's logger."""
    return read_table(path, logger=log)


# -------------------------------------------------------------------------------------- conversion


def _ids(table: Table, col: str) -> tuple[np.ndarray, np.ndarray]:
    """-> (sorted unique ids, int64 index of each row into them). Ids are int64 when every one is a
    plain integer, else str objects. An empty cell is an error."""
    values = table.frame[col]
    codes, uniques = table.distinct(col)
    if (codes < 0).any():  # a missing value in a typed (Parquet) column
        raise table.error("empty cell", int(np.argmax(codes < 0)), col)
    if pd.api.types.is_float_dtype(values.dtype):
        floats = uniques.astype(np.float64)
        bad = floats != np.floor(floats)
        if bad.any():
            row = table.first_row(codes, bad)
            raise table.error(f"wrong type: id {table.cell(row, col)!r} is not an integer", row, col)
        uniques = floats.astype(np.int64)
    elif pd.api.types.is_integer_dtype(values.dtype):
        uniques = uniques.astype(np.int64)
    else:
        empty = uniques == ""
        if empty.any() and empty[codes].any():
            raise table.error("empty cell", table.first_row(codes, empty), col)
        if all(_CANONICAL_INT.fullmatch(u) for u in uniques[~empty]):
            uniques = np.where(empty, "0", uniques).astype(np.int64)
    used = np.zeros(uniques.size, dtype=bool)
    used[codes] = True  # the '' added for empty cells is not an id
    ids, remap = np.unique(uniques[used], return_inverse=True)
    dense = np.full(uniques.size, -1, dtype=np.int64)
    dense[used] = remap.reshape(-1)  # stripping can make two spellings one id: both rows map to it
    return ids, dense[codes]


def _align_ids(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids in one file and text ids in another compare as text."""
    if (a.dtype == object) != (b.dtype == object):
        return a.astype(str).astype(object), b.astype(str).astype(object)
    return a, b


def _numbers(table: Table, col: str, what: str) -> np.ndarray:
    """float64 per row; NaN for an empty cell; an error for text that is not a finite number."""
    values = table.frame[col]
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64)
    if pd.api.types.is_numeric_dtype(values.dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad_rows = np.isinf(arr)
        if bad_rows.any():
            row = int(np.argmax(bad_rows))
            raise table.error(f"wrong type: {what} {table.cell(row, col)!r} is not a number", row, col)
        return arr
    codes, uniques = table.distinct(col)
    lowered = np.array([u.lower() for u in uniques], dtype=object)
    text = np.where(lowered == "true", "1", np.where(lowered == "false", "0", uniques))
    parsed = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    bad = (np.isnan(parsed) & (text != "")) | np.isinf(parsed)
    if bad.any() and bad[codes].any():
        row = table.first_row(codes, bad)
        raise table.error(f"wrong type: {what} {table.cell(row, col)!r} is not a number", row, col)
    return parsed[codes]


def _days(table: Table, col: str) -> np.ndarray:
    """datetime64[D] per row from ISO dates (text), dates or timestamps (Parquet)."""
    values = table.frame[col]
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if values.isna().any():
            raise table.error("empty cell", int(np.argmax(values.isna().to_numpy())), col)
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_localize(None)
        return values.to_numpy().astype("datetime64[D]")
    # Parse each distinct value once: a panel has a few thousand dates but millions of rows.
    codes, uniques = table.distinct(col)
    parsed = pd.to_datetime(pd.Series(uniques, dtype=object), format="ISO8601", errors="coerce")
    bad_unique = parsed.isna().to_numpy()
    if bad_unique.any() and bad_unique[codes].any():
        row = table.first_row(codes, bad_unique)
        raise table.error(f"unparsable date {table.cell(row, col)!r} (expected ISO, e.g. 2024-05-31)", row, col)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.to_numpy().astype("datetime64[D]")[codes]


def _first_duplicate(key: np.ndarray) -> tuple[int, int] | None:
    """Rows (first, second) of the first repeated key in row order, or None."""
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    if not same.any():
        return None
    later = order[1:][same]  # each repeat's row; its equal predecessor in sorted order came earlier in the file
    earlier = order[:-1][same]
    i = int(np.argmin(later))
    return int(earlier[i]), int(later[i])


# ------------------------------------------------------------------------------------------ loading


def load_sales(
    sales_path: str | Path, calendar_path: str | Path | None = None, items_path: str | Path | None = None
) -> SalesPanel:
    """Read a long-format sales file (+ optional calendar and items files) into a `SalesPanel`.

    -> units/price/promo float32 [n_series, n_days], events int8 [n_days, n_events], series sorted by
    (store_id, item_id). `expected` is None (only generated data has a ground truth)."""
    sales = _read(sales_path)
    sales.require(SALES_COLUMNS)
    store_ids, store = _ids(sales, "store_id")
    item_ids, item = _ids(sales, "item_id")
    day = _days(sales, "date")
    units = _numbers(sales, "units", "units")
    empty = np.isnan(units)
    if empty.any():
        raise sales.error("empty cell", int(np.argmax(empty)), "units")
    negative = units < 0
    if negative.any():
        row = int(np.argmax(negative))
        raise sales.error(f"negative units {sales.cell(row, 'units')!r}", row, "units")
    price = _numbers(sales, "price", "price") if "price" in sales.frame.columns else np.full(len(sales), np.nan)
    bad = price <= 0
    if bad.any():
        row = int(np.argmax(bad))
        raise sales.error(f"price {sales.cell(row, 'price')!r} is not > 0", row, "price")
    promo = _numbers(sales, "promo", "promo") if "promo" in sales.frame.columns else np.zeros(len(sales))
    bad = (promo < 0) | (promo > 1)
    if bad.any():
        row = int(np.argmax(bad))
        raise sales.error(f"promo {sales.cell(row, 'promo')!r} is outside [0, 1]", row, "promo")
    promo = np.nan_to_num(promo, nan=0.0)

    start = day.min()
    n_days = int((day.max() - start).astype(np.int64)) + 1
    t = (day - start).astype(np.int64)
    series_key, series = np.unique(store * item_ids.size + item, return_inverse=True)
    series = series.reshape(-1)
    dup = _first_duplicate(series * n_days + t)
    if dup is not None:
        first, second = dup
        raise sales.error(
            f"duplicate row for store {store_ids[store[second]]!r}, item {item_ids[item[second]]!r}, "
            f"date {day[second]} (first at line {int(sales.lines[first])})",
            second,
            "date",
        )

    n_series = series_key.size
    category = _categories(sales, item_ids, item, items_path, series_key % item_ids.size)
    unit_grid, price_grid, promo_grid = _grids(n_series, n_days, series, t, units, price, promo)
    events, event_names = (
        _calendar(Path(calendar_path), start, n_days)
        if calendar_path is not None
        else (np.zeros((n_days, 0), dtype=np.int8), ())
    )
    return SalesPanel(
        units=unit_grid,
        price=price_grid,
        promo=promo_grid,
        start_date=np.datetime64(start, "D"),
        store=(series_key // item_ids.size).astype(np.int32),
        item=(series_key % item_ids.size).astype(np.int32),
        category=category,
        store_ids=store_ids,
        item_ids=item_ids,
        events=events,
        event_names=event_names,
    )


def _grids(
    n_series: int,
    n_days: int,
    series: np.ndarray,
    t: np.ndarray,
    units: np.ndarray,
    price: np.ndarray,
    promo: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long rows -> float32 [n_series, n_days] units, price, promo with the fill rules of the module doc."""
    days = np.arange(n_days)
    unit_grid = np.full((n_series, n_days), np.nan, dtype=np.float32)
    unit_grid[series, t] = units
    first = np.full(n_series, n_days, dtype=np.int64)
    np.minimum.at(first, series, t)
    gap = np.isnan(unit_grid) & (days[None, :] >= first[:, None])
    if gap.any():
        log.info("%d days without a row inside series' lives count as 0 units", int(gap.sum()))
    unit_grid[gap] = 0.0

    price_grid = np.full((n_series, n_days), np.nan, dtype=np.float32)
    known = ~np.isnan(price)
    price_grid[series[known], t[known]] = price[known]
    has = ~np.isnan(price_grid)
    # Forward fill along days: index of the last known day so far (0 while none is known yet).
    last = np.maximum.accumulate(np.where(has, days[None, :], 0), axis=1)
    filled = np.take_along_axis(price_grid, last, axis=1)
    first_known = np.where(has.any(axis=1), has.argmax(axis=1), 0)
    backfill = price_grid[np.arange(n_series), first_known]
    filled = np.where(days[None, :] < first_known[:, None], backfill[:, None], filled)
    price_grid = np.where(np.isnan(filled), np.float32(DEFAULT_PRICE), filled).astype(np.float32)

    promo_grid = np.zeros((n_series, n_days), dtype=np.float32)
    promo_grid[series, t] = promo
    return unit_grid, price_grid, promo_grid


def _categories(
    sales: Table, item_ids: np.ndarray, item: np.ndarray, items_path: str | Path | None, series_item: np.ndarray
) -> np.ndarray:
    """int32 [n_series] category index (sorted category ids of the panel's items)."""
    if items_path is not None:
        items = _read(items_path)
        items.require(("item_id", "category_id"))
        listed, listed_row = _ids(items, "item_id")
        dup = _first_duplicate(listed_row)
        if dup is not None:
            raise items.error(
                f"duplicate item_id {listed[listed_row[dup[1]]]!r} (first at line {int(items.lines[dup[0]])})",
                dup[1],
                "item_id",
            )
        cat_ids, cat_row = _ids(items, "category_id")
        panel_ids, listed = _align_ids(item_ids, listed)
        pos = pd.Index(listed).get_indexer(panel_ids)  # position of each panel item in the listed ids
        if (pos < 0).any():
            missing = int(np.argmax(pos < 0))
            row = int(np.argmax(item == missing))
            raise sales.error(f"item {item_ids[missing]!r} is not in {items.path.name}", row, "item_id")
        # listed row of each listed id -> its category
        cat_of_listed = np.empty(listed.size, dtype=np.int64)
        cat_of_listed[listed_row] = cat_row
        item_cat = cat_of_listed[pos]
    elif "category_id" in sales.frame.columns:
        cat_ids, cat_row = _ids(sales, "category_id")
        item_cat = np.full(item_ids.size, -1, dtype=np.int64)
        item_cat[item] = cat_row  # any row's category; a conflict is checked next
        conflict = item_cat[item] != cat_row
        if conflict.any():
            row = int(np.argmax(conflict))
            raise sales.error(
                f"item {item_ids[item[row]]!r} has two categories: {cat_ids[cat_row[row]]!r} and "
                f"{cat_ids[item_cat[item[row]]]!r}",
                row,
                "category_id",
            )
    else:
        return np.zeros(series_item.size, dtype=np.int32)
    # Dense indices over the categories the panel's items use, in sorted id order.
    _, dense = np.unique(item_cat, return_inverse=True)
    return dense.reshape(-1)[series_item].astype(np.int32)


def _calendar(path: Path, start: np.datetime64, n_days: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """-> events int8 [n_days, n_events], event names (the calendar's columns other than date)."""
    cal = _read(path)
    cal.require(("date",))
    names = tuple(c for c in cal.frame.columns if c != "date")
    day = _days(cal, "date")
    dup = _first_duplicate(day.astype(np.int64))
    if dup is not None:
        raise cal.error(f"duplicate date {day[dup[1]]} (first at line {int(cal.lines[dup[0]])})", dup[1], "date")
    flags = np.zeros((len(cal), len(names)), dtype=np.int8)
    for j, name in enumerate(names):  # loop over event columns, not rows
        values = _numbers(cal, name, "event flag")
        bad = ~np.isin(values, (0.0, 1.0))
        if bad.any():
            row = int(np.argmax(bad))
            raise cal.error(f"event flag {cal.cell(row, name)!r} is not 0 or 1", row, name)
        flags[:, j] = values
    t = (day - start).astype(np.int64)
    inside = (t >= 0) & (t < n_days)
    events = np.zeros((n_days, len(names)), dtype=np.int8)
    events[t[inside]] = flags[inside]
    uncovered = n_days - int(inside.sum())
    if uncovered:
        log.warning("%s: %d of %d sales days are not in the calendar; they have no events", path, uncovered, n_days)
    return events, names
