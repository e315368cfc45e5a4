"""The events capability: POST /v1/events (gRPC `Events`) takes the storefront's events in.

It loads nothing of its own: events on items the catalogue does not know are counted with the item ids
of the recommend capability's `features` component (export's features/items.npz, read once at start-up).
The online store and the durable event log belong to the Runtime (created at start, flushed on reload,
closed at stop).
"""

from __future__ import annotations

from serving.events import pipeline
from serving.events.schemas import EventsRequest, EventsResponse
from serving.runtime.registry import Capability, Endpoint, LoadContext, Loaded


def load(ctx: LoadContext) -> Loaded:
    return {}


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
    components=("features",),
)
