"""The storefront's events and the gateway's durable event log: one format, written by serving, read by training.

An event is {user_id, item_id, event_type, timestamp[, request_id]}; `timestamp` is unix seconds (the gateway
stamps the time it received the event when the client sent none). The log is JSON Lines, one event per line,
in files named `events-<UTC start>-<host>-<pid>-<seq>.jsonl` under SERVING_EVENT_LOG (each gateway process
writes its own files, so several processes can share one folder). `training.data.behavior_io` reads such a
folder directly.
"""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = ("view", "click", "cart", "buy", "skip")
# click/cart/buy: the user took the item; they extend the user's history, as the export's history does.
POSITIVE_EVENTS: frozenset[str] = frozenset({"click", "cart", "buy"})
# skip: shown and ignored, or "not interested": the item is left out for a while (SERVING_SKIP_TTL_S).
SKIP_EVENT = "skip"
# Training learns from view/click/cart/buy; a skip was shown and not taken, which is what a view is to it.
TRAINING_EVENT_MAP: dict[str, str] = {"skip": "view"}

LOG_FIELDS: tuple[str, ...] = ("user_id", "item_id", "event_type", "timestamp", "request_id")
LOG_PREFIX, LOG_SUFFIX = "events-", ".jsonl"
LOG_GLOB = f"{LOG_PREFIX}*{LOG_SUFFIX}"
