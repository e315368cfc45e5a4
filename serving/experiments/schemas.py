"""Bodies of GET /v1/experiments."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serving.contracts.schemas import StrictRequest


class ExperimentsRequest(StrictRequest):
    confidence: float = Field(0.95, ge=0.5, le=0.999, allow_inf_nan=False, description="of the CTR intervals")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"confidence": 0.95}]})


class ArmReport(BaseModel):
    name: str
    weight: float = Field(description="share of users assigned to it")
    ranker: str
    candidates: int | None = Field(None, description="retrieval depth; null: the request's")
    explore_share: float | None = Field(None, description="null: SERVING_EXPLORE_SHARE")
    impressions: int = Field(description="items shown in its answers")
    clicks: int = Field(description="(answer, item) pairs clicked: events naming the answer's request_id")
    carts: int
    buys: int
    ctr: float | None = Field(None, description="clicks / impressions; null before the first impression")
    ctr_low: float | None = Field(None, description="Wilson score interval at `confidence`")
    ctr_high: float | None = None


class ShadowReport(BaseModel):
    name: str
    share: float = Field(description="of the personalised answers, also computed by the shadow arm")
    ranker: str
    candidates: int | None = None
    explore_share: float | None = None
    runs: int = Field(description="runs that finished (ok or degraded)")
    degraded: int = Field(description="of them, runs where a model was unavailable (no agreement taken)")
    failed: int = Field(description="runs that raised or ran out of time")
    dropped: int = Field(description="runs not started: max_inflight were running")
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    agreement: float | None = Field(None, description="mean share of the live answer's items the shadow's holds")


class ExperimentsResponse(BaseModel):
    experiment: str | None = Field(description="null: no experiment configured (SERVING_EXPERIMENT)")
    ledger: str | None = Field(None, description="memory (this process) or redis (every gateway on it)")
    confidence: float
    arms: list[ArmReport]
    shadow: ShadowReport | None = None
