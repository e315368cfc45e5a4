"""Bodies of /v1/price. Prices are per (store, item): the request has no user, and an unknown field is a 422."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from serving.contracts.schemas import NonNegative, ShopId, StrictRequest

# Limits (HTTP 422 beyond them).
MAX_HORIZON_DAYS = 28  # the forecaster's horizon
MAX_CANDIDATES = 64  # rows of one TCN batch (with the current price and two probes: under its max batch)
MAX_CHANGE_PCT = 90.0
DEFAULT_CHANGE_PCT = 20.0

Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]


class PriceRequest(StrictRequest):
    store_id: ShopId
    item_id: ShopId
    unit_cost: NonNegative = Field(description="what one unit costs the shop; profit = (price - unit_cost) x units")
    min_price: Price | None = Field(None, description="lowest price allowed")
    max_price: Price | None = Field(None, description="highest price allowed")
    max_change_pct: Annotated[float, Field(gt=0, le=MAX_CHANGE_PCT, allow_inf_nan=False)] = Field(
        DEFAULT_CHANGE_PCT, description="largest change from the current price, in percent (either way)"
    )
    min_margin_pct: Percent = Field(0.0, description="price >= unit_cost x (1 + min_margin_pct / 100)")
    horizon_days: int = Field(MAX_HORIZON_DAYS, ge=1, le=MAX_HORIZON_DAYS, description="days the price would hold")
    objective: Literal["profit", "revenue"] = "profit"
    stock: NonNegative | None = Field(None, description="units on hand: expected sales are capped by it")
    candidates: int = Field(21, ge=2, le=MAX_CANDIDATES, description="prices tried between the guard rails")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"store_id": "store_1", "item_id": "item_02", "unit_cost": 3.2, "max_change_pct": 15}]
        },
    )

    @field_validator("max_price")
    @classmethod
    def _not_under_min_price(cls, v: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min_price")
        if v is not None and low is not None and v < low:
            raise ValueError(f"must be >= min_price ({low}), got {v}")
        return v


class PriceCandidate(BaseModel):
    price: float
    change_pct: float  # vs the current price
    margin_pct: float | None  # (price - unit_cost) / unit_cost x 100; None at zero cost
    units_expected: float  # over the horizon, capped by stock when sent
    units_p10: float
    units_p50: float
    units_p90: float
    revenue: float
    profit: float
    outside_training_range: bool  # the series never sold at a price this low / high: the model extrapolates


class PriceResponse(BaseModel):
    store_id: int | str
    item_id: int | str
    objective: str
    horizon_days: int
    unit_cost: float
    current_price: float
    recommended: PriceCandidate
    current: PriceCandidate  # the same figures at the current price, for comparison
    candidates: list[PriceCandidate]  # every price tried, increasing
    price_floor: float  # the range the guard rails allow
    price_ceiling: float
    floor_set_by: str  # which request field set each end
    ceiling_set_by: str
    training_price_low: float  # the series' own lowest / highest stored price
    training_price_high: float
    elasticity: float | None  # slope of log expected demand on log price over the candidates
    flags: list[str]  # clipped_by_<rail>, outside_training_range, stock_limits_sales
    note: str = ""
    model_versions: dict[str, int]
    timings_ms: dict[str, float]
