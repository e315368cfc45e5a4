"""Bodies of /v1/recommend and /v1/rank."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from serving.contracts.schemas import Count, Finite, ShopId, StrictRequest

# Limits (HTTP 422 beyond them).
MAX_K = 100
MAX_CANDIDATES = 1000
MAX_HISTORY = 500  # longer than any model's history; the most recent `max_hist` are used
MAX_RANK_ITEMS = 1000


class RecommendRequest(StrictRequest):
    user_id: ShopId
    history: list[ShopId] | None = Field(
        None,
        max_length=MAX_HISTORY,
        description="recent item ids, oldest first; ids the catalogue does not know are skipped (`ignored`); "
        "default: the stored history followed by the user's events (POST /v1/events)",
    )
    k: Count = Field(10, ge=1, le=MAX_K, description="items to return")
    candidates: Count = Field(200, ge=1, le=MAX_CANDIDATES, description="retrieved from FAISS, then ranked")
    exclude_seen: bool = Field(True, description="leave out items in the history")

    @field_validator("candidates")
    @classmethod
    def _at_least_k(cls, v: int, info: ValidationInfo) -> int:
        k = info.data.get("k")
        if isinstance(k, int) and v < k:
            raise ValueError(f"candidates ({v}) must be >= k ({k})")
        return v

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user_id": 10000017, "k": 10}]})


class ScoredItem(BaseModel):
    item_id: int | str
    score: Finite


class RecommendResponse(BaseModel):
    items: list[ScoredItem]
    fallback: bool = Field(description="true: popularity list (unknown user without history), not personalised")
    fallback_reason: str | None = None
    degraded: bool = Field(
        False, description="true: a model was unavailable and a simpler ranking stood in (see degraded_reason)"
    )
    degraded_reason: str | None = None
    ignored: int = Field(0, description="ids of the request's history the catalogue does not know, skipped")
    model_versions: dict[str, int]
    timings_ms: dict[str, float]
    arm: str | None = Field(None, description="the experiment arm that answered (SERVING_EXPERIMENT); null without one")
    request_id: str | None = Field(
        None,
        description="this answer's id, the x-request-id header: send it with the events on its items "
        "(POST /v1/events) to credit them to its arm",
    )


# ---- /v1/rank


class RankRequest(StrictRequest):
    user_id: ShopId | None = None
    history: list[ShopId] = Field(max_length=MAX_HISTORY, description="recent item ids, oldest first; may be empty")
    item_ids: list[ShopId] = Field(min_length=1, max_length=MAX_RANK_ITEMS, description="candidates to score")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"user_id": 10000017, "history": [100000003, 100000099], "item_ids": [100000005, 100000008]}]
        },
    )


class RankResponse(BaseModel):
    items: list[ScoredItem] = Field(description="the candidates, best first; score = click probability")
    model_versions: dict[str, int]
    timings_ms: dict[str, float]
