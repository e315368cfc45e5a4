"""The price capability: /v1/price over the forecast capability's TCN and sales store (no model of its own)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.price import pipeline
from serving.price.schemas import PriceRequest, PriceResponse
from serving.runtime.registry import Capability, Endpoint, LoadContext, Loaded, Models
from serving.runtime.settings import Settings


def load(ctx: LoadContext) -> Loaded:
    """Nothing of its own: the stored sales are the forecast capability's `forecast` component."""
    return {}


def check(parts: Mapping[str, Any], models: Models, settings: Settings) -> list[str]:
    """The answer is read from the forecaster's daily quantiles (and its mean head where it has one)."""
    tcn = models.get(settings.forecast_model)
    if tcn is None or any(t.name == "quantiles" for t in tcn.outputs):
        return []
    return [f"price: {settings.forecast_model} has no `quantiles` output"]


CAPABILITY = Capability(
    name="price",
    endpoints=(
        Endpoint(
            "Price",
            "/v1/price",
            PriceRequest,
            PriceResponse,
            pipeline.price,
            "price per (store, item) within guard rails, from the forecaster's demand at candidate prices",
            "pricing",
        ),
    ),
    models=lambda settings, models: (settings.forecast_model,),
    load=load,
    check=check,
    components=("forecast",),
)
