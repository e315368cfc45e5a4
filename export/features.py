"""Feature artifacts the gateway loads next to the models, built from the behaviour log.

All are .npz files of plain numpy arrays (no pickles: string ids are fixed-width unicode arrays), in
model-index order, so position i of an id array is the shop's id of model index i (the id maps):

items.npz       item_ids [n_items] (shop ids), category, brand int32, price float32,
                price_bucket int64 (the two-tower's buckets, from the checkpoint's edges) and those edges,
                category_vocab / brand_vocab (the shop's category and brand id of each index),
                popularity float64 [n_items] (the cold-start order: recent positives, all-time as tie-break)
users.npz       user_ids [n_users], user_features int32 [n_users, F] (raw values; the model adds +1),
                hist_offsets int64 [n_users + 1], hist_items int32 [...]: each known user's most recent
                `max_hist` positive items (click/cart/buy), oldest first (CSR: user u's history is
                hist_items[hist_offsets[u]:hist_offsets[u + 1]]), the same definition training used.
popularity.npz  items int32 [top] by positive interactions over the log's last `days` days (ties by
                all-time count), counts, and per category the top `per_category` (CSR by category).
sales.npz       the forecast endpoint's stored series: store_ids / item_ids (shop ids), series_store,
                series_item, series_category [S] (indices), units [S, C] (the last C = context days up to
                origin_date, NaN before launch), price / promo [S, C + H] and events [C + H, E] (the
                window plus the H forecast days: last price held, no promotion), first_date, event_names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.fingerprints import behavior_fingerprint
from training.data.schema import BehaviorLog, SalesPanel
from training.data.splits import positive_mask

DAY = 86_400


def behavior_for_export(profile: str, seed: int, data_dir: Path | None) -> BehaviorLog:
    """The log training used: generated from (profile, seed), or read from the user's data directory."""
    from training.data import behavior

    if data_dir is not None:
        return behavior.load_dir(Path(data_dir))[0]
    if profile not in behavior.PROFILES:
        raise ValueError(f"unknown behaviour profile {profile!r}; choose from {sorted(behavior.PROFILES)}")
    return behavior.generate(behavior.PROFILES[profile], seed=seed)[0]


def check_fingerprint(log: BehaviorLog, expected: str, what: str) -> None:
    """Refuse a log other than the one a checkpoint's `data_fingerprint` (training's recipe) names."""
    got = behavior_fingerprint(log)
    if expected and got != expected:
        raise ValueError(
            f"{what} was trained on data with fingerprint {expected}, but the behaviour data here has {got}; "
            "pass the --data directory (or --profile/--seed) used in training"
        )


def _ids(ids: np.ndarray) -> np.ndarray:
    """Shop ids as int64 or fixed-width unicode (npz-safe without pickle)."""
    return ids.astype(np.int64) if np.issubdtype(ids.dtype, np.integer) else ids.astype(str)


def item_table(log: BehaviorLog, price_edges: np.ndarray | None, days: int = 14) -> dict[str, np.ndarray]:
    cat = log.catalogue
    recent_n, total_n = _positive_counts(log, days)
    out = {
        "item_ids": _ids(cat.item_ids),
        "category": cat.category.astype(np.int32),
        "brand": cat.brand.astype(np.int32),
        "price": cat.price.astype(np.float32),
        # One score whose order is popularity()'s: recent count, ties broken by the all-time count.
        "popularity": recent_n + total_n / (total_n.max(initial=0) + 1.0),
    }
    if price_edges is not None:
        out["price_bucket"] = np.searchsorted(np.asarray(price_edges), cat.price, side="right").astype(np.int64)
        out["price_bucket_edges"] = np.asarray(price_edges, dtype=np.float64)
    # The shop's ids of the category / brand indices: the gateway codes an item added online with them.
    out["category_vocab"] = _ids(cat.category_ids) if cat.category_ids is not None else np.arange(cat.n_categories)
    out["brand_vocab"] = _ids(cat.brand_ids) if cat.brand_ids is not None else np.arange(cat.n_brands)
    return out


def user_store(log: BehaviorLog, max_hist: int) -> dict[str, np.ndarray]:
    """Each user's last `max_hist` positives, oldest first, as CSR (the log is sorted by user, time)."""
    pos = positive_mask(log)
    user, item = log.user[pos].astype(np.int64), log.item[pos].astype(np.int32)
    counts = np.bincount(user, minlength=log.n_users)
    ends = np.cumsum(counts)
    keep_n = np.minimum(counts, max_hist)
    # Rank of each positive from its user's end: keep those within the last max_hist.
    from_end = np.repeat(ends, counts) - np.arange(user.size) - 1
    kept = from_end < max_hist
    out = {
        "user_ids": _ids(log.user_ids),
        "hist_offsets": np.concatenate([[0], np.cumsum(keep_n)]).astype(np.int64),
        "hist_items": item[kept],
        "max_hist": np.int64(max_hist),
    }
    if log.user_features is not None:
        out["user_features"] = log.user_features.astype(np.int32)
        out["user_feature_cardinalities"] = np.asarray(log.user_feature_cardinalities, dtype=np.int64)
    return out


def popularity(log: BehaviorLog, days: int = 14, top: int = 1000, per_category: int = 50) -> dict[str, np.ndarray]:
    """Cold-start lists: recent positive counts, all-time counts as the tie-break."""
    recent_n, total_n = _positive_counts(log, days)
    order = np.lexsort((-total_n, -recent_n))  # by recent count, then all-time count (descending)
    cats = log.catalogue.category[order]
    # Top per category in one pass: a stable sort by category keeps the popularity order inside each.
    by_cat = order[np.argsort(cats, kind="stable")]
    cat_sorted = log.catalogue.category[by_cat]
    starts = np.searchsorted(cat_sorted, np.arange(log.catalogue.n_categories))
    rank_in_cat = np.arange(by_cat.size) - starts[cat_sorted]
    keep = rank_in_cat < per_category
    cat_counts = np.bincount(cat_sorted[keep], minlength=log.catalogue.n_categories)
    return {
        "items": order[:top].astype(np.int32),
        "recent_counts": recent_n[order[:top]].astype(np.int64),
        "days": np.int64(days),
        "category_offsets": np.concatenate([[0], np.cumsum(cat_counts)]).astype(np.int64),
        "category_items": by_cat[keep].astype(np.int32),
    }


def _positive_counts(log: BehaviorLog, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive interactions per item over the log's last `days` days, and over the whole log."""
    pos = positive_mask(log)
    n = log.catalogue.n_items
    recent = pos & (log.timestamp >= log.timestamp.max(initial=0) - days * DAY)
    return np.bincount(log.item[recent], minlength=n), np.bincount(log.item[pos], minlength=n)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)  # uncompressed: small files that the gateway loads in milliseconds at start
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Forecast: the recent sales and covariates of every (store, item) series


def sales_for_export(profile: str, seed: int, data_dir: Path | None) -> SalesPanel:
    """The sales panel the TCN was trained on: generated from (profile, seed), or read from a directory."""
    from training.data import sales

    if data_dir is not None:
        return sales.load_dir(Path(data_dir))
    if profile not in sales.PROFILES:
        raise ValueError(f"unknown sales profile {profile!r}; choose from {sorted(sales.PROFILES)}")
    return sales.generate(sales.PROFILES[profile], seed=seed)


def sales_store(panel: SalesPanel, context_days: int, horizon: int) -> dict[str, np.ndarray]:
    """Per series: the last `context_days` of units, and price / promo / events for those days plus the
    `horizon` days after the panel's last day, as the forecast endpoint feeds them to the TCN feature builder.

    The plan for the horizon: the last known price held, no promotion (a request may send its own plan);
    future calendar events are recomputed from the dates when the panel uses the generator's calendar,
    else left 0 (unknown)."""
    from training.data.sales import calendar_events

    n_days = panel.n_days
    first = max(n_days - context_days, 0)
    units = panel.units[:, first:].astype(np.float32)
    # Last known price per series (forward fill over the window, vectorised): index of the latest finite day.
    price = panel.price[:, first:].astype(np.float32)
    known = np.isfinite(price)
    last_idx = np.maximum.accumulate(np.where(known, np.arange(price.shape[1])[None, :], -1), axis=1)[:, -1]
    last_price = np.where(last_idx >= 0, price[np.arange(price.shape[0]), np.maximum(last_idx, 0)], np.nan)
    plan_price = np.repeat(last_price[:, None], horizon, axis=1).astype(np.float32)
    promo = panel.promo[:, first:].astype(np.float32)
    events = panel.events[first:].astype(np.int8)
    future_start = panel.start_date + np.timedelta64(n_days, "D")
    future, names = calendar_events(future_start, horizon)
    if tuple(names) != tuple(panel.event_names):
        future = np.zeros((horizon, events.shape[1]), dtype=np.int8)
    return {
        "store_ids": _ids(panel.store_ids),
        "item_ids": _ids(panel.item_ids),
        "series_store": panel.store.astype(np.int32),
        "series_item": panel.item.astype(np.int32),
        "series_category": panel.category.astype(np.int32),
        "units": units,
        "price": np.concatenate([price, plan_price], axis=1),
        "promo": np.concatenate([promo, np.zeros((promo.shape[0], horizon), np.float32)], axis=1),
        "events": np.concatenate([events, future.astype(np.int8)], axis=0),
        "event_names": np.asarray(panel.event_names, dtype=str),
        "first_date": np.asarray(str(panel.start_date + np.timedelta64(first, "D"))),
        "origin_date": np.asarray(str(panel.start_date + np.timedelta64(n_days - 1, "D"))),
        "horizon": np.int64(horizon),
    }
