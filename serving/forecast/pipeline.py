"""/v1/forecast as a transport-free async function: P10/P50/P90 demand per day and, with `stock`, the
replenishment advice.

The TCN's inputs come from a ForecastFeatureSource (serving/forecast/source.py over export's
features/sales.npz); without those artifacts, or with the TCN unavailable at run time, the endpoint
answers 503 with Retry-After: a wrong number is worse than none.
"""

from __future__ import annotations

import numpy as np

from serving.forecast.answer import forecast_days, replenishment_advice
from serving.forecast.schemas import ForecastRequest, ForecastResponse
from serving.forecast.source import ForecastFeatureSource
from serving.runtime.breaker import ModelUnavailable
from serving.runtime.metrics import StageTimer
from serving.runtime.runtime import Runtime


async def forecast(rt: Runtime, req: ForecastRequest) -> ForecastResponse:
    timer = StageTimer(rt.metrics, "forecast")
    with timer.stage("features"):
        source: ForecastFeatureSource = rt.artifacts.need("forecast")
        name = rt.settings.forecast_model
        model = rt.model(name)
        built = source.build(req.store_id, req.item_id, req.history)
    with timer.stage("model"):
        out = await rt.infer(name, built.inputs)
        quantiles = np.asarray(out["quantiles"], dtype=np.float64)[0]  # [H, levels]
        mean = np.asarray(out["mean"], dtype=np.float64)[0] if "mean" in out else None  # [H]
        if not np.all(np.isfinite(quantiles)) or (mean is not None and not np.all(np.isfinite(mean))):
            raise ModelUnavailable(name, "the model returned values that are not finite numbers")
    with timer.stage("replenishment"):
        days = forecast_days(quantiles, built.quantile_levels, req.horizon, built.first_date)
        plan = replenishment_advice(quantiles, built.quantile_levels, req, built.calibration, mean)
    return ForecastResponse(
        store_id=req.store_id,
        item_id=req.item_id,
        days=days,
        replenishment=plan,
        model_versions={name: model.version},
        timings_ms=timer.ms,
    )
