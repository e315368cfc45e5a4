"""Bodies of /v1/forecast."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from serving.contracts.schemas import Count, Finite, ShopId, StrictRequest

# Limits (HTTP 422 beyond them). The number and date bounds keep every computation finite: the models run
# in float32, and the sent days plus the horizon must be real calendar days.
MAX_HORIZON = 28
MAX_SALES_DAYS = 1096  # three years of daily sales
MAX_LEAD_TIME_DAYS = 365
MAX_UNITS = 1e9  # per day; also the bound on stock and on_order
MAX_PRICE = 1e9
FIRST_DATE, LAST_DATE = dt.date(1900, 1, 1), dt.date(2199, 12, 31)  # the sent days and the forecast days

Units = Annotated[float, Field(ge=0, le=MAX_UNITS, allow_inf_nan=False)]


class SalesHistory(StrictRequest):
    units: list[Units | None] = Field(
        min_length=1, max_length=MAX_SALES_DAYS, description="daily units sold, oldest first; null = unknown"
    )
    end_date: dt.date = Field(
        description=f"date of the last `units` value (the forecast starts the day after); the sent days and the "
        f"{MAX_HORIZON} forecast days must lie within {FIRST_DATE} .. {LAST_DATE}"
    )
    price: list[Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)] | None] | None = Field(
        None, description="price per day: the `units` days, optionally followed by the planned forecast days"
    )
    promo: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None] | None = Field(
        None, description="promotion share in [0, 1], same days as `price`"
    )

    @field_validator("end_date")
    @classmethod
    def _in_window(cls, v: dt.date, info: ValidationInfo) -> dt.date:
        n = len(info.data.get("units") or ())
        if v - FIRST_DATE < dt.timedelta(days=max(n - 1, 0)) or LAST_DATE - v < dt.timedelta(days=MAX_HORIZON):
            raise ValueError(f"the sent days and the forecast must lie within {FIRST_DATE} .. {LAST_DATE}")
        return v

    @field_validator("price", "promo")
    @classmethod
    def _covers_units(cls, v: list | None, info: ValidationInfo) -> list | None:
        units = info.data.get("units")
        if v is not None and units is not None and not len(units) <= len(v) <= len(units) + MAX_HORIZON:
            raise ValueError(
                f"needs between len(units) = {len(units)} and len(units) + {MAX_HORIZON} values, got {len(v)}"
            )
        return v


class ForecastRequest(StrictRequest):
    store_id: ShopId
    item_id: ShopId
    history: SalesHistory | None = Field(None, description="recent sales; default: the stored ones")
    horizon: Count = Field(MAX_HORIZON, ge=1, le=MAX_HORIZON, description="days to return")
    stock: Units | None = Field(None, description="units on hand; when given, the answer has replenishment advice")
    on_order: Units = Field(0.0, description="units ordered and not yet delivered")
    lead_time_days: Annotated[float, Field(ge=0, le=MAX_LEAD_TIME_DAYS, allow_inf_nan=False)] = 7.0
    review_days: Annotated[float, Field(ge=0, le=MAX_LEAD_TIME_DAYS, allow_inf_nan=False)] = 7.0
    service_level: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.95

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"store_id": "store_1", "item_id": "item_02", "horizon": 14, "stock": 20}]},
    )


class ForecastDay(BaseModel):
    date: dt.date | None
    p10: Finite
    p50: Finite
    p90: Finite


class Replenishment(BaseModel):
    status: Literal["order_now", "watch", "ok"]
    order_quantity: Finite
    reorder_point: Finite
    order_up_to: Finite
    safety_stock: Finite
    lead_time_demand_median: Finite
    extrapolated: bool
    note: str = ""


class ForecastResponse(BaseModel):
    store_id: int | str
    item_id: int | str
    days: list[ForecastDay]
    replenishment: Replenishment | None
    model_versions: dict[str, int]
    timings_ms: dict[str, float]
