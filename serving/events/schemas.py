"""Bodies of /v1/events."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from serving.contracts.schemas import ShopId, StrictRequest

# Limits (HTTP 422 beyond them).
MAX_EVENTS = 1000
MAX_TIMESTAMP = 7_258_118_400.0  # 2200-01-01: the same calendar bound as the sales dates
MAX_REQUEST_ID_CHARS = 128

EventType = Literal["view", "click", "cart", "buy", "skip"]  # serving/contracts/events.py EVENT_TYPES
UnixSeconds = Annotated[float, Strict(), Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)]  # a JSON number
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REQUEST_ID_CHARS)]


class Event(StrictRequest):
    user_id: ShopId
    item_id: ShopId
    event_type: EventType = Field(description="view, click, cart, buy, or skip (shown and ignored / not interested)")
    timestamp: UnixSeconds | None = Field(None, description="unix seconds; default: when it arrived")
    request_id: RequestId | None = Field(None, description="the x-request-id of the answer that showed the item")


class EventsRequest(StrictRequest):
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS, description="in the order they happened")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"events": [{"user_id": 10000017, "item_id": 100000003, "event_type": "click"}]}]
        },
    )


class EventsResponse(BaseModel):
    accepted: int = Field(description="events taken in: in the log, and (click/cart/buy/skip) in the user's state")
    unknown_items: int = Field(description="of them, on items the catalogue does not know (kept and counted)")
