"""Request and response bodies of the HTTP API (v1), with every limit in one place.

Requests forbid unknown fields (a typo is a 422, not a silently ignored option), numbers must be
finite, and ids are the shop's own: integers or strings. bench/ imports these to build and check
requests. gRPC (issue 7) mirrors the same fields and limits.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Limits (HTTP 422 beyond them).
MAX_K = 100
MAX_CANDIDATES = 1000
MAX_HISTORY = 500  # longer than any model's history; the most recent `max_hist` are used
MAX_RANK_ITEMS = 1000
MAX_TEXTS = 64
MAX_TEXT_CHARS = 2000
MAX_HORIZON = 28
MAX_SALES_DAYS = 1096  # three years of daily sales
MAX_ID_CHARS = 128
MAX_LEAD_TIME_DAYS = 365

IntId = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]  # strict: true/false are not ids
StrId = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
ShopId = IntId | StrId
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- /v1/recommend


class RecommendRequest(_Request):
    user_id: ShopId
    history: list[ShopId] | None = Field(
        None, max_length=MAX_HISTORY, description="recent item ids, oldest first; default: the stored history"
    )
    k: int = Field(10, ge=1, le=MAX_K, description="items to return")
    candidates: int = Field(200, ge=1, le=MAX_CANDIDATES, description="retrieved from FAISS, then ranked")
    exclude_seen: bool = Field(True, description="leave out items in the history")

    @field_validator("candidates")
    @classmethod
    def _at_least_k(cls, v: int, info: ValidationInfo) -> int:
        k = info.data.get("k")
        if isinstance(k, int) and v < k:
            raise ValueError(f"candidates ({v}) must be >= k ({k})")
        return v

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"user_id": "u42", "history": ["i7", "i19"], "k": 10}]}
    )


class ScoredItem(BaseModel):
    item_id: int | str
    score: float


class RecommendResponse(BaseModel):
    items: list[ScoredItem]
    fallback: bool = Field(description="true: popularity list (unknown user without history), not personalised")
    fallback_reason: str | None = None
    model_versions: dict[str, int]
    timings_ms: dict[str, float]


# ---- /v1/rank


class RankRequest(_Request):
    user_id: ShopId | None = None
    history: list[ShopId] = Field(max_length=MAX_HISTORY, description="recent item ids, oldest first; may be empty")
    item_ids: list[ShopId] = Field(min_length=1, max_length=MAX_RANK_ITEMS, description="candidates to score")

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"history": ["i7", "i19"], "item_ids": ["i3", "i5", "i8"]}]}
    )


class RankResponse(BaseModel):
    items: list[ScoredItem] = Field(description="the candidates, best first; score = click probability")
    model_versions: dict[str, int]
    timings_ms: dict[str, float]


# ---- /v1/forecast


class SalesHistory(_Request):
    units: list[NonNegative | None] = Field(
        min_length=1, max_length=MAX_SALES_DAYS, description="daily units sold, oldest first; null = unknown"
    )
    end_date: dt.date = Field(description="date of the last `units` value (the forecast starts the day after)")
    price: list[Annotated[float, Field(gt=0, allow_inf_nan=False)] | None] | None = Field(
        None, description="price per day: the `units` days, optionally followed by the planned forecast days"
    )
    promo: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None] | None = Field(
        None, description="promotion share in [0, 1], same days as `price`"
    )

    @field_validator("price", "promo")
    @classmethod
    def _covers_units(cls, v: list | None, info: ValidationInfo) -> list | None:
        units = info.data.get("units")
        if v is not None and units is not None and not len(units) <= len(v) <= len(units) + MAX_HORIZON:
            raise ValueError(
                f"needs between len(units) = {len(units)} and len(units) + {MAX_HORIZON} values, got {len(v)}"
            )
        return v


class ForecastRequest(_Request):
    store_id: ShopId
    item_id: ShopId
    history: SalesHistory | None = Field(None, description="recent sales; default: the stored ones")
    horizon: int = Field(MAX_HORIZON, ge=1, le=MAX_HORIZON, description="days to return")
    stock: NonNegative | None = Field(
        None, description="units on hand; when given, the answer has replenishment advice"
    )
    on_order: NonNegative = Field(0.0, description="units ordered and not yet delivered")
    lead_time_days: Annotated[float, Field(ge=0, le=MAX_LEAD_TIME_DAYS, allow_inf_nan=False)] = 7.0
    review_days: Annotated[float, Field(ge=0, le=MAX_LEAD_TIME_DAYS, allow_inf_nan=False)] = 7.0
    service_level: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.95

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"store_id": 1, "item_id": 42, "horizon": 14, "stock": 30}]}
    )


class ForecastDay(BaseModel):
    date: dt.date | None
    p10: float
    p50: float
    p90: float


class Replenishment(BaseModel):
    status: Literal["order_now", "watch", "ok"]
    order_quantity: float
    reorder_point: float
    order_up_to: float
    safety_stock: float
    lead_time_demand_median: float
    extrapolated: bool
    note: str = ""


class ForecastResponse(BaseModel):
    store_id: int | str
    item_id: int | str
    days: list[ForecastDay]
    replenishment: Replenishment | None
    model_versions: dict[str, int]
    timings_ms: dict[str, float]


# ---- /v1/intent


class IntentRequest(_Request):
    text: Text | None = None
    texts: list[Text] | None = Field(None, min_length=1, max_length=MAX_TEXTS)

    @model_validator(mode="after")
    def _one_of(self) -> IntentRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of `text` or `texts`")
        return self

    @property
    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "my card has not arrived yet"}]})


class IntentScore(BaseModel):
    intent: str
    probability: float


class IntentResult(BaseModel):
    intent: str
    confidence: float
    top: list[IntentScore] = Field(description="the three most likely intents")
    handoff: bool = Field(description="true: route to a human (low confidence or a sensitive intent)")


class IntentResponse(BaseModel):
    results: list[IntentResult] = Field(description="one per text, in request order")
    model_versions: dict[str, int]
    timings_ms: dict[str, float]


# ---- operations


class ErrorBody(BaseModel):
    error: str
    detail: Any


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    draining: bool
    models: dict[str, int]
    components: dict[str, str] = Field(description="'ok' or why a part is unavailable")


class ModelsResponse(BaseModel):
    backend: str
    models: list[dict[str, Any]]
    manifest: dict[str, Any] | None


class ReloadRequest(_Request):
    models: list[str] | None = Field(None, max_length=64, description="default: every served model")


class ReloadResponse(BaseModel):
    changed: dict[str, dict[str, int | None]]
    unchanged: list[str]
    artifacts_reloaded: bool
