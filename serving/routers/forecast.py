"""POST /v1/forecast: P10/P50/P90 demand per day and, with `stock`, the replenishment advice.

The TCN's inputs come from a ForecastFeatureSource (serving/forecast_source.py over export's
features/sales.npz); without those artifacts this route answers 503.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from fastapi import APIRouter

from serving.app import Runtime
from serving.features import ForecastFeatureSource
from serving.metrics import StageTimer
from serving.replenishment import plan_replenishment
from serving.routers.deps import ERRORS, RuntimeDep
from serving.schemas import ForecastDay, ForecastRequest, ForecastResponse, Replenishment

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
        levels = list(built.quantile_levels)
        cols = [levels.index(q) for q in (0.1, 0.5, 0.9)]
        shown = quantiles[: req.horizon][:, cols].tolist()
        start = built.first_date
        days = [
            ForecastDay(date=start + dt.timedelta(days=i) if start else None, p10=a, p50=b, p90=c)
            for i, (a, b, c) in enumerate(shown)  # at most 28 answer rows
        ]
        plan = None
        if req.stock is not None:  # plans over the model's whole horizon, not just the days shown
            p = plan_replenishment(
                quantiles,
                req.stock,
                req.lead_time_days,
                req.service_level,
                review_days=req.review_days,
                on_order=req.on_order,
                quantile_levels=levels,
            )
            plan = Replenishment(
                status=str(p.status),
                order_quantity=float(p.order_quantity),
                reorder_point=float(p.reorder_point),
                order_up_to=float(p.order_up_to),
                safety_stock=float(p.safety_stock),
                lead_time_demand_median=float(p.lead_time_demand_median),
                extrapolated=bool(p.extrapolated),
                note=p.note,
            )
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
