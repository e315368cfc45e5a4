"""Protobuf messages (serving/proto/storefront.proto) <-> the HTTP API's pydantic models (serving/schemas.py).

Requests become the same dicts a JSON body would be, then go through the same pydantic models, so both
APIs share one set of limits and one set of error messages. Unset optional fields are left out (the
model's default applies); an empty `Id` is "not given"; NaN in a sales series is an unknown day (null).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf.message import Message

from serving.proto import ensure_stubs

ensure_stubs()  # a fresh checkout or install has no stubs yet

from serving.proto import storefront_pb2 as pb  # noqa: E402  (generated just above when missing)
from serving.schemas import (  # noqa: E402
    ForecastRequest,
    ForecastResponse,
    IntentRequest,
    IntentResponse,
    RankRequest,
    RankResponse,
    RecommendRequest,
    RecommendResponse,
    ScoredItem,
)

ShopId = int | str

# ---- requests: proto -> pydantic (raises pydantic.ValidationError naming the field)


def _id(msg: pb.Id) -> ShopId | None:
    kind = msg.WhichOneof("value")
    return None if kind is None else getattr(msg, kind)


def _ids(msgs: Iterable[pb.Id]) -> list[ShopId | None]:
    return [_id(m) for m in msgs]


def _given(msg: Message, out: dict[str, Any], *names: str) -> None:
    """Copy the fields the client set; unset ones keep the pydantic default."""
    for name in names:
        if msg.HasField(name):
            value = getattr(msg, name)
            out[name] = _id(value) if isinstance(value, pb.Id) else value


def _series(values: Sequence[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def recommend_request(msg: pb.RecommendRequest) -> RecommendRequest:
    body: dict[str, Any] = {}
    _given(msg, body, "user_id", "k", "candidates", "exclude_seen")
    if msg.HasField("history"):
        body["history"] = _ids(msg.history.ids)
    return RecommendRequest.model_validate(body)


def rank_request(msg: pb.RankRequest) -> RankRequest:
    body: dict[str, Any] = {"history": _ids(msg.history), "item_ids": _ids(msg.item_ids)}
    _given(msg, body, "user_id")
    return RankRequest.model_validate(body)


_FORECAST_FIELDS = (
    "store_id",
    "item_id",
    "horizon",
    "stock",
    "on_order",
    "lead_time_days",
    "review_days",
    "service_level",
)


def forecast_request(msg: pb.ForecastRequest) -> ForecastRequest:
    body: dict[str, Any] = {}
    _given(msg, body, *_FORECAST_FIELDS)
    if msg.HasField("history"):
        h = msg.history
        history: dict[str, Any] = {"units": _series(h.units), "end_date": h.end_date}
        if h.price:
            history["price"] = _series(h.price)
        if h.promo:
            history["promo"] = _series(h.promo)
        body["history"] = history
    return ForecastRequest.model_validate(body)


def intent_request(msg: pb.IntentRequest) -> IntentRequest:
    body: dict[str, Any] = {}
    _given(msg, body, "text")
    if msg.texts:
        body["texts"] = list(msg.texts)
    return IntentRequest.model_validate(body)


# ---- responses: pydantic -> proto


def _id_msg(value: ShopId) -> pb.Id:
    return pb.Id(string_value=value) if isinstance(value, str) else pb.Id(int_value=value)


def _items(items: Sequence[ScoredItem]) -> list[pb.ScoredItem]:
    return [pb.ScoredItem(item_id=_id_msg(it.item_id), score=it.score) for it in items]


def recommend_response(r: RecommendResponse) -> pb.RecommendResponse:
    return pb.RecommendResponse(
        items=_items(r.items),
        fallback=r.fallback,
        fallback_reason=r.fallback_reason,  # None leaves the optional field unset
        model_versions=r.model_versions,
        timings_ms=r.timings_ms,
    )


def rank_response(r: RankResponse) -> pb.RankResponse:
    return pb.RankResponse(items=_items(r.items), model_versions=r.model_versions, timings_ms=r.timings_ms)


def forecast_response(r: ForecastResponse) -> pb.ForecastResponse:
    days = [
        pb.ForecastDay(date=d.date.isoformat() if d.date else None, p10=d.p10, p50=d.p50, p90=d.p90) for d in r.days
    ]
    plan = pb.Replenishment(**r.replenishment.model_dump()) if r.replenishment is not None else None
    return pb.ForecastResponse(
        store_id=_id_msg(r.store_id),
        item_id=_id_msg(r.item_id),
        days=days,
        replenishment=plan,
        model_versions=r.model_versions,
        timings_ms=r.timings_ms,
    )


def intent_response(r: IntentResponse) -> pb.IntentResponse:
    results = [
        pb.IntentResult(
            intent=x.intent,
            confidence=x.confidence,
            top=[pb.IntentScore(intent=t.intent, probability=t.probability) for t in x.top],
            handoff=x.handoff,
        )
        for x in r.results
    ]
    return pb.IntentResponse(results=results, model_versions=r.model_versions, timings_ms=r.timings_ms)


# ---- for clients and tests


def as_dict(msg: Message) -> Any:
    """A message as the HTTP API's JSON would have it: ids as plain int/str, unset optional fields as None."""
    if isinstance(msg, pb.Id):
        return _id(msg)
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = dict(value)  # this API's maps hold scalars only
        elif field.is_repeated:
            out[field.name] = [as_dict(v) if isinstance(v, Message) else v for v in value]
        elif field.has_presence and not msg.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = as_dict(value) if isinstance(value, Message) else value
    return out
