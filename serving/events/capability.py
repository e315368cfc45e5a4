"""The events capability: POST /v1/events (gRPC `Events`) takes the storefront's events in.

Its one artifact is the catalogue's item ids (features/items.npz), to count events on items it does not
know; the online store and the durable event log belong to the Runtime (created at start, flushed on
reload, closed at stop).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.contracts.ids import IdMap
from serving.events import pipeline
from serving.events.schemas import EventsRequest, EventsResponse
from serving.runtime.registry import BUILD_HINT, Capability, Endpoint, LoadContext, Loaded, Missing, read_artifact

ITEMS_FILE = "features/items.npz"  # written by export (serving/recommend/features.py documents it)


def _item_ids(path: Any) -> IdMap:
    with np.load(path, allow_pickle=False) as f:  # only the ids are read from the archive
        return IdMap(f["item_ids"])


def load(ctx: LoadContext) -> Loaded:
    path = ctx.settings.artifacts / ITEMS_FILE
    if not path.is_file():
        return {"catalogue": Missing(f"{path} not found ({BUILD_HINT})")}
    return {"catalogue": read_artifact(path, _item_ids, path)}


CAPABILITY = Capability(
    name="events",
    endpoints=(
        Endpoint(
            "Events",
            "/v1/events",
            EventsRequest,
            EventsResponse,
            pipeline.ingest,
            "storefront events in (view, click, cart, buy, skip): the next recommendation sees them",
            "events",
        ),
    ),
    models=lambda settings, models: (),
    load=load,
    components=("catalogue",),
)
