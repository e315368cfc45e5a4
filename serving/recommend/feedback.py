"""What the user just did, for /v1/recommend: online history, skips, down-weighted and unseen categories (numpy).

- History (read-your-writes): without a `history` in the request, the export's stored history followed by
  the user's online click/cart/buy events, at once, also for a user the export never saw. A request's own
  `history` is used as sent, its unknown ids skipped and counted (`ignored`).
- Skips: an item skipped within SERVING_SKIP_TTL_S is left out of every list (personal, popular, degraded).
- Streaks: a category skipped SERVING_SKIP_STREAK times in a row (skips within the TTL after the user's last
  click/cart/buy in it) has its ranking scores multiplied by SERVING_SKIP_DOWNWEIGHT.
- Exploration: SERVING_EXPLORE_SHARE of the k slots go to the best-scored items of categories the user has
  not seen (neither in the history nor skipped), one per category; the most popular item of each of a few
  such categories joins the candidates so DIN scores it with the rest.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from serving.recommend.catalogue import LiveCatalogue
from serving.recommend.features import FeatureStore, ItemTable
from serving.recommend.live_index import LiveIndex
from serving.recommend.membership import isin
from serving.recommend.retrieval import Retriever
from serving.runtime.online_store import StoreUnavailable, UserEvents
from serving.runtime.runtime import Runtime

log = logging.getLogger("serving.recommend")
EMPTY = np.zeros(0, dtype=np.int64)
EXPLORE_SCAN = 4096  # popular items looked at per step when looking for unseen categories


@dataclass
class UserContext:
    history: np.ndarray  # item indices, oldest first
    skipped: np.ndarray = field(default_factory=lambda: EMPTY)  # item indices skipped within the TTL
    down: np.ndarray = field(default_factory=lambda: EMPTY)  # categories to down-weight
    ignored: int = 0  # request history ids the catalogue does not know
    store_error: str | None = None  # why the online state is missing from this answer
    features: FeatureStore | None = None  # the catalogue view's tables (items added online included)
    index: LiveIndex | Retriever | None = None  # and its retrieval index

    def seen_categories(self, items: ItemTable) -> np.ndarray:
        return np.unique(items.category[np.concatenate([self.history, self.skipped])])


async def user_context(
    rt: Runtime,
    fs: FeatureStore,
    catalogue: LiveCatalogue | None,
    user_id: int | str,
    history: list | None,
    user: int | None,
) -> UserContext:
    """The user's history, skips and down-weighted categories from the request, the export and the online store,
    over the catalogue as it is now (synced first when another process changed it)."""
    s = rt.settings
    online: UserEvents | None = None
    error: str | None = None
    view = catalogue.view if catalogue is not None else None
    try:
        online = await rt.online.user(str(user_id))
        if catalogue is not None:
            view = await catalogue.sync(rt.online, online.catalogue_version)
    except StoreUnavailable as exc:
        rt.metrics.online_store_errors.labels("read").inc()
        log.warning("online store read failed: %s", exc.internal)
        error = exc.message
    if view is not None:
        fs = view.features
    index = view.index if view is not None else None
    if history is not None:
        hist, ignored = fs.items.ids.known(history, "history")
        if ignored:
            rt.metrics.ignored_ids.labels("recommend", "history").inc(ignored)
    else:
        hist, ignored = (fs.users.history(user) if user is not None and fs.users is not None else EMPTY), 0
    if online is None:
        return UserContext(hist, ignored=ignored, store_error=error, features=fs, index=index)
    now = time.time()
    pos_items, pos_ts = _known(fs.items, online.history)
    if history is None and pos_items.size:
        hist = np.concatenate([hist, pos_items])
    skip_items, skip_ts = _known(fs.items, _recent(online, now - s.skip_ttl_s))
    down = streak_categories(
        fs.items.category[skip_items], skip_ts, fs.items.category[pos_items], pos_ts, s.skip_streak
    )
    return UserContext(hist, np.unique(skip_items), down, ignored, features=fs, index=index)


def _recent(online: UserEvents, since: float) -> list[tuple[float, str]]:
    return [(ts, item) for ts, item in online.skips if ts >= since]


def _known(items: ItemTable, entries: list[tuple[float, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, times) of the entries on items the catalogue knows (others wait for a catalogue that does)."""
    if not entries:
        return EMPTY, np.zeros(0)
    index = items.ids.lookup([item for _, item in entries])
    keep = index >= 0
    return index[keep], np.array([ts for ts, _ in entries], dtype=np.float64)[keep]


def streak_categories(
    skip_cats: np.ndarray, skip_ts: np.ndarray, pos_cats: np.ndarray, pos_ts: np.ndarray, streak: int
) -> np.ndarray:
    """Categories with >= `streak` skips after the last positive event in that category."""
    if skip_cats.size < streak:
        return EMPTY
    cats, inverse = np.unique(skip_cats, return_inverse=True)
    last_pos = np.full(cats.size, -np.inf)
    on = np.isin(pos_cats, cats)
    np.maximum.at(last_pos, np.searchsorted(cats, pos_cats[on]), pos_ts[on])
    after = skip_ts > last_pos[inverse]
    counts = np.bincount(inverse[after], minlength=cats.size)
    return cats[counts >= streak]


def explore_slots(share: float, k: int) -> int:
    return min(k, math.floor(share * k + 0.5)) if share > 0 else 0


def explore_candidates(items: ItemTable, seen_cats: np.ndarray, exclude: np.ndarray, n: int) -> np.ndarray:
    """The most popular available item of each of up to `n` categories not in `seen_cats`, not in `exclude`."""
    order, found = items.popular_order, EMPTY
    for start in range(0, order.shape[0], EXPLORE_SCAN):  # popular items first: usually one step
        chunk = order[start : start + EXPLORE_SCAN]
        ok = ~isin(items.category[chunk], seen_cats) & ~isin(chunk, exclude)
        if items.blocked is not None:
            ok &= ~items.blocked[chunk]
        found = np.concatenate([found, chunk[ok]])
        if np.unique(items.category[found]).size >= n:
            break
    _, first = np.unique(items.category[found], return_index=True)
    return found[np.sort(first)][:n]


def rerank(
    scores: np.ndarray, cats: np.ndarray, k: int, down: np.ndarray, factor: float, seen: np.ndarray, n_explore: int
) -> tuple[np.ndarray, np.ndarray]:
    """-> (positions of the top k among the candidates, best first; the final scores). Down-weighted categories'
    scores are multiplied by `factor`; `n_explore` slots hold the best candidate of each unseen category."""
    final = scores.copy()
    if down.size:
        final[isin(cats, down)] *= factor
    order = np.argsort(-final, kind="stable")
    if n_explore <= 0:
        return order[:k], final
    fresh = order[~isin(cats[order], seen)]
    _, first = np.unique(cats[fresh], return_index=True)
    explore = fresh[np.sort(first)][:n_explore]
    rest = order[~isin(order, explore)][: k - explore.size]
    picked = np.concatenate([rest, explore])
    return picked[np.argsort(-final[picked], kind="stable")], final
