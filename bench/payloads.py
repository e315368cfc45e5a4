"""Request bodies for the load tests, drawn from the artifacts the servers load.

A pool per endpoint, written once as JSON so every load generator (and every repeat) sends the same
requests; each body is validated with the gateway's own request models, so a schema change breaks here
and not halfway through a benchmark.

- recommend: 80 % known users (their stored history is used), 20 % guests with a short session history
  of popular items (personalised from the request alone); k = 10 of 200 candidates.
- intent: BANKING77 test messages when the file is found (BENCH_INTENT_TEXTS or ../shared/data),
  else a built-in list of storefront messages.
- forecast: stored (store, item) series, with a stock level so the answer includes replenishment advice.
- price: stored series with a unit cost of 60 % of the series' median stored price, +-20 % around the
  current price, every third with a stock level; not in the default mix (`--mix ...,price=5` adds it).
- events: batches of 20 storefront events (views, clicks, carts, skips) of known users on popular items, as
  a shop streams them back; not in the default mix (`--mix ...,events=10` adds it: no model work, so it
  moves the compute bound only by its share).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from serving.events.schemas import EventsRequest
from serving.forecast.schemas import ForecastRequest
from serving.intent.schemas import IntentRequest
from serving.price.schemas import PriceRequest
from serving.recommend.schemas import RecommendRequest

ENDPOINTS = {
    "recommend": "/v1/recommend",
    "intent": "/v1/intent",
    "forecast": "/v1/forecast",
    "price": "/v1/price",
    "events": "/v1/events",
}
REQUEST_MODELS = {
    "recommend": RecommendRequest,
    "intent": IntentRequest,
    "forecast": ForecastRequest,
    "price": PriceRequest,
    "events": EventsRequest,
}
EVENTS_PER_BATCH = 20
EVENT_MIX = {"view": 0.6, "click": 0.25, "cart": 0.07, "skip": 0.08}

FALLBACK_TEXTS = (
    "where is my order",
    "my card has not arrived yet",
    "I want a refund for the shoes I returned",
    "how do I change my delivery address",
    "the parcel arrived damaged",
    "can I pay with a gift card",
    "I was charged twice for the same order",
    "when will the jacket be back in stock",
    "cancel my order please",
    "my discount code does not work",
    "how long does a refund take",
    "I forgot my password",
    "is there a size guide for these trousers",
    "the tracking number is not working",
    "can I return an item bought on sale",
    "I need to talk to a person",
)


def _shop_ids(values: np.ndarray) -> list[int | str]:
    return [int(v) if np.issubdtype(values.dtype, np.integer) else str(v) for v in values]


def _banking77() -> Path | None:
    root = Path(__file__).resolve().parents[1]
    for name in (os.environ.get("BENCH_INTENT_TEXTS", ""), str(root.parent / "shared/data/banking77/test.csv")):
        if name and Path(name).is_file():
            return Path(name)
    return None


def labelled_intent_texts(limit: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, intent) pairs from BANKING77's test split, shuffled; [] when the file is not found."""
    path = _banking77()
    if path is None:
        return []
    with path.open(newline="") as f:
        rows = [(r["text"].strip(), r.get("category", "")) for r in csv.DictReader(f) if r.get("text", "").strip()]
    order = np.random.default_rng(seed).permutation(len(rows))[:limit]
    return [rows[i] for i in order]


def intent_texts(limit: int, seed: int = 0) -> list[str]:
    """Customer messages: BANKING77's test split when present, else the built-in list."""
    return [t for t, _ in labelled_intent_texts(limit, seed)] or list(FALLBACK_TEXTS)


def build_pool(artifacts: Path, n: int = 400, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """{endpoint: [request body, ...]} from artifacts/features; an endpoint whose data is missing gets none."""
    rng = np.random.default_rng(seed)
    pool: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINTS}
    feats = artifacts / "features"
    if (feats / "items.npz").is_file() and (feats / "users.npz").is_file():
        with np.load(feats / "items.npz", allow_pickle=False) as z:
            item_ids = z["item_ids"]
            popularity = z["popularity"] if "popularity" in z.files else np.ones(len(item_ids))
        with np.load(feats / "users.npz", allow_pickle=False) as z:
            user_ids, offsets = z["user_ids"], z["hist_offsets"]
        known = np.flatnonzero(np.diff(offsets) > 0)
        popular = np.argsort(-popularity, kind="stable")[: max(50, len(item_ids) // 20)]
        for i in range(n):
            if i % 5 and known.size:
                user = _shop_ids(user_ids[[rng.choice(known)]])[0]
                pool["recommend"].append({"user_id": user, "k": 10, "candidates": 200})
            else:
                session = rng.choice(popular, size=int(rng.integers(3, 11)), replace=False)
                body = {"user_id": f"guest-{i}", "history": _shop_ids(item_ids[session]), "k": 10, "candidates": 200}
                pool["recommend"].append(body)
        pool["events"] = _event_batches(rng, _shop_ids(user_ids[known]), _shop_ids(item_ids[popular]), n)
    pool["intent"] = [{"text": t} for t in intent_texts(n, seed)]
    if (feats / "sales.npz").is_file():
        with np.load(feats / "sales.npz", allow_pickle=False) as z:
            stores = _shop_ids(z["store_ids"][z["series_store"]])
            items = _shop_ids(z["item_ids"][z["series_item"]])
            past = z["price"][:, : z["units"].shape[1]].astype(np.float64)
        for s in rng.integers(0, len(stores), size=min(n, len(stores) * 4)):
            stock = float(rng.integers(0, 60))
            pool["forecast"].append({"store_id": stores[s], "item_id": items[s], "horizon": 28, "stock": stock})
        cost = np.round(0.6 * np.nanmedian(np.where(past > 0, past, np.nan), axis=1), 2)
        for i, s in enumerate(rng.integers(0, len(stores), size=min(n, len(stores) * 4))):
            if not np.isfinite(cost[s]):
                continue
            body = {"store_id": stores[s], "item_id": items[s], "unit_cost": float(cost[s]), "max_change_pct": 20}
            pool["price"].append({**body, "stock": float(rng.integers(5, 80))} if i % 3 == 0 else body)
    for name, bodies in pool.items():
        for body in bodies:
            REQUEST_MODELS[name].model_validate(body)  # the gateway would answer 422: fail here instead
    return pool


def _event_batches(rng: np.random.Generator, users: list, items: list, n: int) -> list[dict[str, Any]]:
    if not users or not items:
        return []
    kinds = rng.choice(list(EVENT_MIX), size=(n, EVENTS_PER_BATCH), p=list(EVENT_MIX.values()))
    who = rng.integers(0, len(users), size=(n, EVENTS_PER_BATCH))
    what = rng.integers(0, len(items), size=(n, EVENTS_PER_BATCH))
    batches = []
    for row in zip(who, what, kinds, strict=True):
        batch = [{"user_id": users[u], "item_id": items[i], "event_type": str(k)} for u, i, k in zip(*row, strict=True)]
        batches.append({"events": batch})
    return batches


def write_pool(pool: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pool))
    return path


def load_pool(path: Path) -> dict[str, list[dict[str, Any]]]:
    return {k: list(v) for k, v in json.loads(Path(path).read_text()).items()}
