"""The price capability: /v1/price over the forecast capability's TCN and sales store (no training of its own;
the plans model, when served, is the same TCN exported to take K plans of one past)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.contracts.model_specs import TCN_PLANS
from serving.price import pipeline
from serving.price.schemas import PriceRequest, PriceResponse
from serving.runtime.registry import Capability, Endpoint, LoadContext, Loaded, Models
from serving.runtime.settings import Settings


def load(ctx: LoadContext) -> Loaded:
    """Nothing of its own: the stored sales are the forecast capability's `forecast` component."""
    return {}


def check(parts: Mapping[str, Any], models: Models, settings: Settings) -> list[str]:
    """The answer is read from the forecaster's daily quantiles (and its mean head where it has one); the plans
    model, when served, must take the forecaster's past and plans of its future inputs and answer its outputs."""
    tcn, plans = models.get(settings.forecast_model), models.get(TCN_PLANS.name)
    if tcn is not None and not any(t.name == "quantiles" for t in tcn.outputs):
        return [f"price: {settings.forecast_model} has no `quantiles` output"]
    if tcn is None or plans is None:
        return []
    want = {t.name: t.dims for t in (*tcn.inputs, *tcn.outputs)}
    got = {t.name: t.dims for t in (*plans.inputs, *plans.outputs)}
    # Per plan (the leading plans axis dropped), future_plans is a future_features and the outputs the TCN's.
    got["future_features"] = got.pop("future_plans", ())[1:]
    got.update({k: got[k][1:] for k in ("quantiles", "mean") if k in got})
    wrong = sorted(k for k in want if got.get(k) != want[k])
    return [f"price: {TCN_PLANS.name} does not fit {settings.forecast_model} ({', '.join(wrong)})"] if wrong else []


def _models(settings: Settings, models: Models) -> tuple[str, ...]:
    """The forecaster, and the plans model where it is served (each answer's model_versions says which answered)."""
    return (settings.forecast_model, TCN_PLANS.name) if TCN_PLANS.name in models else (settings.forecast_model,)


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
    models=_models,
    load=load,
    check=check,
    components=("forecast",),
)
