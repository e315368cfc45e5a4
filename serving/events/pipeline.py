"""/v1/events as a transport-free async function: a batch of storefront events in, at once visible to recommend.

Each batch: the click/cart/buy and skip events go to the online store (per-user history and skips, in
memory or on Redis), then every event to the durable log; views go to the log only. An event on an item the
catalogue does not know (a product added since the export) is accepted, logged and counted, not refused.
Store first, then log: a store that fails answers 503 with nothing logged, so the client's retry duplicates
nothing. Under an experiment, click/cart/buy events that name the answer (`request_id`) that showed their item are
credited to its arm, once per answer, item and type (a ledger that fails is counted; the batch is still accepted).
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from serving.contracts.events import POSITIVE_EVENTS, SKIP_EVENT
from serving.contracts.ids import IdMap
from serving.events.schemas import EventsRequest, EventsResponse
from serving.experiments.ledger import Engagement
from serving.experiments.service import active
from serving.recommend.catalogue import current_features
from serving.runtime.online_store import OnlineEvent, StoreUnavailable
from serving.runtime.runtime import Runtime

KEPT_ONLINE = POSITIVE_EVENTS | {SKIP_EVENT}


async def ingest(rt: Runtime, req: EventsRequest) -> EventsResponse:
    # The item ids of the recommend capability's catalogue view (items added online included): one copy for both.
    catalogue: IdMap = current_features(rt.artifacts).items.ids
    rt.event_log.ensure_room()  # before the store: a refused batch leaves no trace anywhere
    events = req.events
    now = time.time()
    stamps = [e.timestamp if e.timestamp is not None else now for e in events]
    unknown = int(np.count_nonzero(catalogue.lookup([e.item_id for e in events]) < 0))
    online = [
        OnlineEvent(str(e.user_id), str(e.item_id), t, e.event_type == SKIP_EVENT)
        for e, t in zip(events, stamps, strict=True)
        if e.event_type in KEPT_ONLINE
    ]
    try:
        await rt.online.append(online)
    except StoreUnavailable:
        rt.metrics.online_store_errors.labels("append").inc()
        raise
    rt.event_log.write(
        {
            "user_id": e.user_id,
            "item_id": e.item_id,
            "event_type": e.event_type,
            "timestamp": t,
            **({"request_id": e.request_id} if e.request_id is not None else {}),
        }
        for e, t in zip(events, stamps, strict=True)
    )
    exp = active(rt)
    if exp is not None:
        await exp.credit(
            [
                Engagement(e.request_id, str(e.item_id), e.event_type)
                for e in events
                if e.request_id is not None and e.event_type in POSITIVE_EVENTS
            ]
        )
    for event_type, n in Counter(e.event_type for e in events).items():
        rt.metrics.events.labels(event_type).inc(n)
    if unknown:
        rt.metrics.events_unknown_items.inc(unknown)
    return EventsResponse(accepted=len(events), unknown_items=unknown)
