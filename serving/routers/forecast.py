"""POST /v1/forecast: P10/P50/P90 demand per day and, with `stock`, the replenishment advice.

The TCN's inputs come from a ForecastFeatureSource (serving/forecast_source.py over export's
features/sales.npz); without those artifacts this route answers 503.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from serving.app import Runtime
from serving.features import ForecastFeatureSource
from serving.forecast_answer import forecast_days, replenishment_advice
from serving.metrics import StageTimer
from serving.routers.deps import ERRORS, RuntimeDep
from serving.schemas import ForecastRequest, ForecastResponse

router = APIRouter(tags=["forecasting"])


async def forecast(rt: Runtime, req: ForecastRequest) -> ForecastResponse:
    timer = StageTimer(rt.metrics, "forecast")
    with timer.stage("features"):
        source: ForecastFeatureSource = rt.artifacts.need("forecast")
        name = rt.settings.forecast_model
        model = rt.model(name)
        built = source.build(req.store_id, req.item_id, req.history)
    with timer.stage("model"):
        quantiles = np.asarray((await rt.infer(name, built.inputs))["quantiles"], dtype=np.float64)[0]  # [H, levels]
    with timer.stage("replenishment"):
        days = forecast_days(quantiles, built.quantile_levels, req.horizon, built.first_date)
        plan = replenishment_advice(quantiles, built.quantile_levels, req)
    return ForecastResponse(
        store_id=req.store_id,
        item_id=req.item_id,
        days=days,
        replenishment=plan,
        model_versions={name: model.version},
        timings_ms=timer.ms,
    )


@router.post("/v1/forecast", response_model=ForecastResponse, responses=ERRORS, summary="daily demand quantiles")
async def forecast_route(req: ForecastRequest, rt: RuntimeDep) -> ForecastResponse:
    return await forecast(rt, req)
