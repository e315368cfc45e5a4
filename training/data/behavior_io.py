"""Loader for the shop's own behaviour files (CSV or Parquet) -> `BehaviorLog`.

Schema (column names case-insensitive, any order, extra columns ignored):

events   user_id, item_id, category_id, event_type, timestamp
         event_type in view/click/cart/buy; timestamp = unix seconds or an ISO-8601 datetime
         (naive = UTC). Taobao UserBehavior files (behavior_type in pv/fav/cart/buy instead of
         event_type) are read too, with or without a header line. The gateway's event log (a folder
         of events-*.jsonl files, or one such file; training/data/event_log.py) is read directly: its
         events carry no category_id, which the items file then gives, and its `skip` events (shown,
         not taken) count as views.
items    item_id, category_id[, brand_id][, price]   (optional file; optional columns)
users    user_id[, feature columns...]               (optional file; every other column is a
                                                      categorical feature)

Ids may be integers or strings; an id column takes its type from its first row. Dense indices
follow the sorted order of the ids, so files whose ids sort like the model indices load onto the
same indices (the generator relies on this).

Policy for bad input: a structural problem fails with `DataFileError` naming file, line and column
(missing column, empty file, wrong type, unparsable timestamp, unknown event type, an item with two
categories, a duplicated item or user in its own file). Dirty rows are dropped and COUNTED in a
warning on the `training.data.behavior_io` logger: rows with an empty required cell, events on an
item absent from the items file; a blank line counts as a row of empty cells. `strict=True` turns
those into errors as well. Lines are 1-based file lines for CSV (the header is line 1) and 1-based row
numbers for Parquet. Files are read by `training.data.table_io`, the reader both loaders share
(encodings, line ends, repeated column names, Parquet errors).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from serving.contracts.events import TRAINING_EVENT_MAP
from training.data.errors import DataFileError
from training.data.event_log import is_event_log, read_event_log
from training.data.schema import EVENT_TYPES, TAOBAO_EVENT_MAP, BehaviorLog, Catalogue
from training.data.table_io import Table, read_table

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("user_id", "item_id", "category_id", "event_type", "timestamp")
TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
_EVENT_HEADER_NAMES = tuple(dict.fromkeys(EVENT_COLUMNS + TAOBAO_COLUMNS))  # a first line naming one is a header
DEFAULT_PRICE = 1.0  # when the items file or its price column is absent
_INT_PATTERN = r"[+-]?\d+"


def load_behavior(
    events_path: str | Path,
    items_path: str | Path | None = None,
    users_path: str | Path | None = None,
    *,
    strict: bool = False,
) -> BehaviorLog:
    """Read events (+ optional items and users files) into a `BehaviorLog` sorted by (user, timestamp)."""
    if is_event_log(events_path):
        events = read_event_log(events_path, strict)
    else:
        events = _read(events_path, _EVENT_HEADER_NAMES, headerless_names=EVENT_COLUMNS)
    type_col = "event_type" if "event_type" in events.frame.columns else "behavior_type"
    if type_col not in events.frame.columns:
        events.require(("event_type",))
    has_cat = "category_id" in events.frame.columns
    if not has_cat and items_path is None:
        found = ", ".join(map(str, events.frame.columns))
        raise DataFileError(
            events.path,
            f"missing column 'category_id' (found: {found}); without it, give the catalogue as an items file "
            "(item_id, category_id[, brand_id][, price]), e.g. the export's items.parquet beside an event log",
            line=events.header_line,
            column="category_id",
        )
    events.require(("user_id", "item_id", "timestamp"))
    required = ("user_id", "item_id", *(("category_id",) if has_cat else ()), type_col, "timestamp")
    _drop_missing(events, required, strict)
    if len(events) == 0:
        raise DataFileError(events.path, "no events left after dropping rows with empty cells")

    ev_user = _ids(events, "user_id")
    ev_item = _ids(events, "item_id")
    ev_cat = _ids(events, "category_id") if has_cat else None
    ev_type = _event_types(events, type_col)
    ev_time = _timestamps(events, "timestamp")

    items = _read(items_path, ("item_id", "category_id")) if items_path is not None else None
    if items is not None:
        items.require(("item_id", "category_id"))
        optional = tuple(c for c in ("brand_id", "price") if c in items.frame.columns)
        _drop_missing(items, ("item_id", "category_id", *optional), strict)
        it_item, ev_item = _common_type(_ids(items, "item_id"), ev_item)
        it_cat = _ids(items, "category_id")
        if ev_cat is not None:
            it_cat, ev_cat = _common_type(it_cat, ev_cat)
        _no_duplicates(items, it_item, "item_id")
        known = np.isin(ev_item, it_item)
        if not known.all():
            first = int(np.argmin(known))
            if strict:
                raise events.error(f"item {ev_item[first]!r} is not in {items.path.name}", first, "item_id")
            log.warning(
                "%s: dropped %d of %d events on items absent from %s (first at line %d)",
                events.path,
                int((~known).sum()),
                known.size,
                items.path.name,
                int(events.lines[first]),
            )
            events.keep(known)
            ev_user, ev_item, ev_type, ev_time = (a[known] for a in (ev_user, ev_item, ev_type, ev_time))
            ev_cat = ev_cat[known] if ev_cat is not None else None
            if len(events) == 0:
                raise DataFileError(events.path, f"no event is on an item listed in {items.path.name}")
        if ev_cat is None:  # an event log: each event's category is its item's
            ev_cat = it_cat[_positions(it_item, ev_item)]
    else:
        it_item = it_cat = None

    item_ids, ev_item_idx = np.unique(
        ev_item if it_item is None else np.concatenate([it_item, ev_item]), return_inverse=True
    )
    ev_item_idx = ev_item_idx[-ev_item.size :]
    cat_ids, cat_idx = np.unique(ev_cat if it_cat is None else np.concatenate([it_cat, ev_cat]), return_inverse=True)
    ev_cat_idx = cat_idx[-ev_cat.size :]
    category = _item_categories(events, ev_item_idx, ev_cat_idx, item_ids, cat_ids, items, it_item, cat_idx)

    brand = np.zeros(item_ids.size, dtype=np.int32)
    price = np.full(item_ids.size, DEFAULT_PRICE, dtype=np.float32)
    n_brands = 1
    brand_ids = None
    if items is not None:
        pos = np.searchsorted(item_ids, it_item) if item_ids.dtype != object else _positions(item_ids, it_item)
        if "brand_id" in items.frame.columns:
            brand_ids, brand_idx = np.unique(_ids(items, "brand_id"), return_inverse=True)
            brand[pos] = brand_idx
            n_brands = int(brand_ids.size)
        if "price" in items.frame.columns:
            price[pos] = _prices(items, "price")

    users = _read(users_path, ("user_id",)) if users_path is not None else None
    us_user = None
    if users is not None:
        users.require(("user_id",))
        _drop_missing(users, ("user_id",), strict)
        us_user, ev_user = _common_type(_ids(users, "user_id"), ev_user)
        _no_duplicates(users, us_user, "user_id")
    user_ids, user_idx = np.unique(
        ev_user if us_user is None else np.concatenate([us_user, ev_user]), return_inverse=True
    )
    ev_user_idx = user_idx[-ev_user.size :].astype(np.int32)
    features, cards = (None, ())
    if users is not None:
        features, cards = _user_features(users, user_idx[: us_user.size], user_ids.size)

    order = np.lexsort((ev_time, ev_user_idx))  # stable: ties keep file order
    catalogue = Catalogue(
        category=category,
        brand=brand,
        price=price,
        n_categories=int(cat_ids.size),
        n_brands=n_brands,
        item_ids=item_ids,
        category_ids=cat_ids,
        brand_ids=brand_ids,
    )
    return BehaviorLog(
        user=ev_user_idx[order],
        item=ev_item_idx[order].astype(np.int32),
        event=ev_type[order],
        timestamp=ev_time[order],
        catalogue=catalogue,
        user_ids=user_ids,
        user_features=features,
        user_feature_cardinalities=cards,
    )


# ----------------------------------------------------------------------------------------- reading


def _read(path: str | Path, header_names: tuple[str, ...], headerless_names: tuple[str, ...] | None = None) -> Table:
    """The shared reader (`table_io`) with this loader's rules: the first line is a header when it names
    one of `header_names`, else (`headerless_names` given) the columns are positional; blank lines stay
    as rows of empty cells, which `_drop_missing` counts (or rejects when strict)."""
    return read_table(
        path, header_names=header_names, headerless_names=headerless_names, keep_blank_lines=True, logger=log
    )


def _drop_missing(table: Table, columns: tuple[str, ...], strict: bool) -> None:
    missing = table.frame[list(columns)].isna().to_numpy()
    bad = missing.any(axis=1)
    if not bad.any():
        return
    first = int(np.argmax(bad))
    column = columns[int(np.argmax(missing[first]))]
    if strict:
        raise table.error("empty cell", first, column)
    log.warning(
        "%s: dropped %d of %d rows with an empty cell (first at line %d, column '%s')",
        table.path,
        int(bad.sum()),
        bad.size,
        int(table.lines[first]),
        column,
    )
    table.keep(~bad)


# -------------------------------------------------------------------------------------- conversion


def _ids(table: Table, col: str) -> np.ndarray:
    """int64 when the first row is an integer (then every row must be), else str objects."""
    values = table.frame[col]
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(values.dtype):  # Parquet floats: integral values only
        arr = values.to_numpy(dtype=np.float64)
        bad = arr != np.floor(arr)
        if bad.any():
            row = int(np.argmax(bad))
            raise table.error(f"wrong type: id {arr[row]!r} is not an integer", row, col)
        return arr.astype(np.int64)
    text = values.astype(str).str.strip()
    is_int = text.str.fullmatch(_INT_PATTERN).to_numpy(dtype=bool)
    if not is_int[0]:
        return text.to_numpy(dtype=object)
    if not is_int.all():
        row = int(np.argmin(is_int))
        raise table.error(f"wrong type: {text.iloc[row]!r} is not an integer like the ids above it", row, col)
    return pd.to_numeric(text).to_numpy(dtype=np.int64)


def _common_type(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids in one file and text ids in another compare as text."""
    if (a.dtype == object) != (b.dtype == object):
        return a.astype(str).astype(object), b.astype(str).astype(object)
    return a, b


def _event_types(table: Table, col: str) -> np.ndarray:
    """int8 index into EVENT_TYPES. `behavior_type` uses Taobao's names; a headerless file may use either."""
    text = table.frame[col].astype(str).str.strip().str.lower()
    ours = {name: i for i, name in enumerate(EVENT_TYPES)}
    ours.update({k: EVENT_TYPES.index(v) for k, v in TRAINING_EVENT_MAP.items()})  # the gateway's `skip`
    taobao = {k: EVENT_TYPES.index(v) for k, v in TAOBAO_EVENT_MAP.items()}
    if col == "behavior_type" or (text.isin(["pv", "fav"]).any() and not text.isin(["view", "click"]).any()):
        mapping, vocab = taobao, TAOBAO_EVENT_MAP
    else:
        mapping, vocab = ours, EVENT_TYPES
    codes = text.map(mapping)
    bad = codes.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise table.error(f"unknown event type {text.iloc[row]!r} (expected one of {', '.join(vocab)})", row, col)
    return codes.to_numpy(dtype=np.int8)


def _timestamps(table: Table, col: str) -> np.ndarray:
    """int64 unix seconds. Numeric when the first row is a number (then all must be), else ISO-8601."""
    values = table.frame[col]
    if pd.api.types.is_datetime64_any_dtype(values.dtype):  # Parquet timestamp column
        if values.dt.tz is not None:
            values = values.dt.tz_convert(None)
        return values.to_numpy().astype("datetime64[s]").astype(np.int64)
    numeric = pd.to_numeric(values, errors="coerce")
    if not np.isnan(numeric.iloc[0]):
        arr = numeric.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.argmax(bad))
            raise table.error(f"unparsable timestamp {values.iloc[row]!r} (unix seconds above)", row, col)
        return np.floor(arr).astype(np.int64)
    parsed = pd.to_datetime(values.astype(str).str.strip(), format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise table.error(f"unparsable timestamp {values.iloc[row]!r} (expected unix seconds or ISO-8601)", row, col)
    return parsed.dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)


def _prices(table: Table, col: str) -> np.ndarray:
    arr = pd.to_numeric(table.frame[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        row = int(np.argmax(bad))
        raise table.error(f"wrong type: price {table.frame[col].iloc[row]!r} is not a positive number", row, col)
    return arr.astype(np.float32)


def _no_duplicates(table: Table, ids: np.ndarray, col: str) -> None:
    _, first_pos, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        seen = np.zeros(ids.size, dtype=bool)
        seen[first_pos] = True
        row = int(np.argmin(seen))
        raise table.error(f"duplicate {col} {ids[row]!r}", row, col)


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """searchsorted for object (str) arrays, which numpy does not compare natively."""
    index = pd.Index(sorted_ids)
    return index.get_indexer(ids)


def _item_categories(
    events: Table,
    ev_item: np.ndarray,
    ev_cat: np.ndarray,
    item_ids: np.ndarray,
    cat_ids: np.ndarray,
    items: Table | None,
    it_item: np.ndarray | None,
    cat_idx: np.ndarray,
) -> np.ndarray:
    """int32 [n_items] category per item; an item seen with two categories is an error."""
    category = np.full(item_ids.size, -1, dtype=np.int64)
    if items is not None:
        pos = np.searchsorted(item_ids, it_item) if item_ids.dtype != object else _positions(item_ids, it_item)
        category[pos] = cat_idx[: it_item.size]
    # First category seen per item in the events, in file order.
    first_row = np.full(item_ids.size, ev_item.size, dtype=np.int64)
    np.minimum.at(first_row, ev_item, np.arange(ev_item.size))
    from_events = category < 0
    seen = first_row < ev_item.size
    category[from_events & seen] = ev_cat[first_row[from_events & seen]]
    conflict = ev_cat != category[ev_item]
    if conflict.any():
        row = int(np.argmax(conflict))
        item = item_ids[ev_item[row]]
        expected = cat_ids[category[ev_item[row]]]
        if items is not None and not from_events[ev_item[row]]:
            where = f"{items.path.name} says {expected!r}"
        else:
            where = f"{expected!r} at line {int(events.lines[first_row[ev_item[row]]])}"
        raise events.error(
            f"item {item!r} has two categories: {cat_ids[ev_cat[row]]!r} here, {where}", row, "category_id"
        )
    return category.astype(np.int32)


def _user_features(users: Table, rows_user: np.ndarray, n_users: int) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """int32 [n_users, n_features] codes. Columns of non-negative integers keep their values as codes
    (cardinality = max + 1); other columns get codes in sorted order of their values. Users without a
    row (or with an empty cell) get one extra 'unknown' code, counted in a warning."""
    names = [c for c in users.frame.columns if c != "user_id"]
    if not names:
        return None, ()
    features = np.zeros((n_users, len(names)), dtype=np.int32)
    cards = []
    has_row = np.zeros(n_users, dtype=bool)
    has_row[rows_user] = True
    for j, name in enumerate(names):
        values = users.frame[name]
        numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        known = ~values.isna().to_numpy()
        if np.all(np.isfinite(numeric[known]) & (numeric[known] >= 0) & (numeric[known] == np.floor(numeric[known]))):
            codes = np.where(known, numeric, 0).astype(np.int64)
            card = int(codes[known].max()) + 1 if known.any() else 0
        else:
            text = values.astype(str).to_numpy(dtype=object)
            uniq, inv = np.unique(text[known], return_inverse=True)
            codes = np.zeros(text.size, dtype=np.int64)
            codes[known] = inv
            card = int(uniq.size)
        col = np.full(n_users, card, dtype=np.int64)  # 'unknown' code
        col[rows_user[known]] = codes[known]
        n_unknown = int((col == card).sum())
        if n_unknown:
            log.warning("%s: %d users lack a value for '%s'; they get code %d", users.path, n_unknown, name, card)
            card += 1
        features[:, j] = col
        cards.append(card)
    return features, tuple(cards)
