"""The forecast answer from the TCN's quantiles: the days shown and, when stock is sent, the replenishment advice.

Shared by the gateway's /v1/forecast and the benchmark's naive peer, so both answer the same way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from serving.forecast.calibration import TotalsCalibration
from serving.forecast.replenishment import plan_replenishment
from serving.forecast.schemas import ForecastDay, ForecastRequest, Replenishment

SHOWN = (0.1, 0.5, 0.9)


def forecast_days(
    quantiles: np.ndarray, levels: Sequence[float], horizon: int, first_date: dt.date | None
) -> list[ForecastDay]:
    """quantiles [H, n_levels] -> the first `horizon` days as P10/P50/P90."""
    cols = [list(levels).index(q) for q in SHOWN]
    return [
        ForecastDay(date=first_date + dt.timedelta(days=i) if first_date else None, p10=a, p50=b, p90=c)
        for i, (a, b, c) in enumerate(quantiles[:horizon][:, cols].tolist())
    ]


def replenishment_advice(
    quantiles: np.ndarray,
    levels: Sequence[float],
    req: ForecastRequest,
    calibration: TotalsCalibration | None = None,
    mean: np.ndarray | None = None,
) -> Replenishment | None:
    """The advice when the request sends `stock`; planned over the model's whole horizon, not just the days shown,
    from the calibrated period totals when the artifacts carry a calibration (`mean` [H]: the model's daily
    mean forecast, which a calibration of slow movers by their mean needs)."""
    if req.stock is None:
        return None
    p = plan_replenishment(
        quantiles,
        req.stock,
        req.lead_time_days,
        req.service_level,
        review_days=req.review_days,
        on_order=req.on_order,
        quantile_levels=list(levels),
        calibration=calibration,
        mean_demand=mean,
    )
    return Replenishment(
        status=str(p.status),
        order_quantity=float(p.order_quantity),
        reorder_point=float(p.reorder_point),
        order_up_to=float(p.order_up_to),
        safety_stock=float(p.safety_stock),
        lead_time_demand_median=float(p.lead_time_demand_median),
        extrapolated=bool(p.extrapolated),
        note=p.note,
    )
