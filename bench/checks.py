"""What the load test checks in each answer, and the traffic mix syntax (no locust import: tests use these).

A check returns (problem or None, the answer's timings_ms). Answers are parsed with the gateway's own
response models, then checked for sense: a wrong answer is a failure, never throughput.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from bench.payloads import ENDPOINTS
from serving.events.schemas import EventsResponse
from serving.forecast.schemas import ForecastResponse
from serving.intent.schemas import IntentResponse
from serving.price.schemas import PriceResponse
from serving.recommend.schemas import RecommendResponse

DEFAULT_MIX = "recommend=70,intent=20,forecast=10"
# Stages of the answers' timings_ms that are model or index work; the rest is the server's own overhead.
MODEL_STAGES = ("user_tower", "retrieval", "ranking", "model")

Check = Callable[[bytes, dict[str, Any]], tuple[str | None, dict[str, float]]]


def parse_mix(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {name!r} in --mix; choose from {sorted(ENDPOINTS)}")
        out[name] = float(weight or 1)
    return out


# ---- answer checks: None = fine, else why not


def check_recommend(body: bytes, req: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
    r = RecommendResponse.model_validate_json(body)
    scores = [i.score for i in r.items]
    if not r.items or len(r.items) > req.get("k", 10):
        return f"{len(r.items)} items for k={req.get('k', 10)}", r.timings_ms
    if any(a < b for a, b in itertools.pairwise(scores)):
        return "items not sorted by score", r.timings_ms
    if len({str(i.item_id) for i in r.items}) != len(r.items):
        return "duplicate items", r.timings_ms
    return None, r.timings_ms


def check_intent(body: bytes, req: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
    r = IntentResponse.model_validate_json(body)
    n = 1 if "text" in req else len(req["texts"])
    if len(r.results) != n:
        return f"{len(r.results)} results for {n} texts", r.timings_ms
    if any(not 0.0 <= x.confidence <= 1.0 or not x.intent for x in r.results):
        return "confidence outside [0, 1] or empty intent", r.timings_ms
    return None, r.timings_ms


def check_forecast(body: bytes, req: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
    r = ForecastResponse.model_validate_json(body)
    if len(r.days) != req.get("horizon", 28):
        return f"{len(r.days)} days for horizon {req.get('horizon', 28)}", r.timings_ms
    if any(not d.p10 - 1e-6 <= d.p50 <= d.p90 + 1e-6 for d in r.days):
        return "quantiles out of order", r.timings_ms
    if req.get("stock") is not None and r.replenishment is None:
        return "no replenishment advice although stock was sent", r.timings_ms
    return None, r.timings_ms


def check_price(body: bytes, req: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
    r = PriceResponse.model_validate_json(body)
    best, prices = r.recommended, [c.price for c in r.candidates]
    if not r.candidates or prices != sorted(prices):
        return f"{len(prices)} candidates, or not in increasing price", r.timings_ms
    if not r.price_floor - 1e-6 <= best.price <= r.price_ceiling + 1e-6:
        return f"recommended {best.price} outside the guard rails {r.price_floor}..{r.price_ceiling}", r.timings_ms
    value = "profit" if r.objective == "profit" else "revenue"
    if getattr(best, value) < max(getattr(c, value) for c in r.candidates) - 1e-6:
        return f"recommended price is not the best candidate for {value}", r.timings_ms
    stock = req.get("stock")
    if stock is not None and any(c.units_expected > stock + 1e-6 for c in r.candidates):
        return "expected units above the stock sent", r.timings_ms
    return None, r.timings_ms


def check_events(body: bytes, req: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
    r = EventsResponse.model_validate_json(body)
    if r.accepted != len(req["events"]):
        return f"{r.accepted} events accepted of {len(req['events'])}", {}
    return None, {}


CHECKS: dict[str, Check] = {
    "recommend": check_recommend,
    "intent": check_intent,
    "forecast": check_forecast,
    "price": check_price,
    "events": check_events,
}
