"""The forecast capability: /v1/forecast over the TCN and export's sales store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.forecast import pipeline
from serving.forecast.schemas import ForecastRequest, ForecastResponse
from serving.forecast.source import SALES_FILE, StoredSales
from serving.runtime.registry import (
    BUILD_HINT,
    Capability,
    Endpoint,
    LoadContext,
    Loaded,
    Missing,
    Models,
    load_present,
)
from serving.runtime.settings import Settings


def load(ctx: LoadContext) -> Loaded:
    path = ctx.file("forecast.file", SALES_FILE)
    section = ctx.section("forecast")
    if path.is_file() and section is None:
        return {"forecast": Missing(f"{path} has no forecast section in the manifest ({BUILD_HINT})")}
    return {"forecast": load_present(path, StoredSales.load, path, section)}


def check(parts: Mapping[str, Any], models: Models, settings: Settings) -> list[str]:
    """The stored sales' feature layout must be the one the served TCN was trained on."""
    sales: StoredSales | None = parts.get("forecast")
    tcn = models.get(settings.forecast_model)
    if sales is None or tcn is None:
        return []
    dims = {t.name: tuple(t.dims) for t in tcn.inputs}
    want = {
        "past_features": (sales.spec.n_past, sales.spec.context_days),
        "future_features": (sales.spec.n_future, sales.spec.horizon),
    }
    wrong = [f"{k} {dims[k]} != {v}" for k, v in want.items() if k in dims and dims[k] != v and -1 not in dims[k]]
    return ["forecast features do not fit the TCN: " + ", ".join(wrong)] if wrong else []


CAPABILITY = Capability(
    name="forecast",
    endpoints=(
        Endpoint(
            "Forecast",
            "/v1/forecast",
            ForecastRequest,
            ForecastResponse,
            pipeline.forecast,
            "daily demand quantiles",
            "forecasting",
        ),
    ),
    models=lambda settings, models: (settings.forecast_model,),
    load=load,
    check=check,
    components=("forecast",),
)
