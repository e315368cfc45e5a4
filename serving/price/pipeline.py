"""/v1/price as a transport-free async function: the best price for one (store, item) within the guard rails.

1. The stored series, its current price and the prices it has sold at (serving/price/features.py).
2. The allowed range from the rails and a grid of candidates inside it (serving/price/rails.py).
3. One model call for every candidate, a probe beyond each end of the range and the current price. With
   the plans model served (model_specs.TCN_PLANS, exported with the TCN) that is one row: the past once
   and a plan per price, so the encoder runs once per question. Else they are rows of ONE TCN batch (24
   rows for 21 prices, each re-running the encoder over the same past). Both give the same answer (tests).
4. Units, revenue and profit per row (serving/price/advice.py); the best candidate for the objective.

Never silent about what it cannot know: the answer flags a recommended price that a rail holds back
(clipped_by_<field>: the probe past that end would do better), one outside the prices this series has
sold at (outside_training_range: the model extrapolates), and stock that caps the sales.
"""

from __future__ import annotations

import numpy as np

from serving.contracts.errors import InvalidInput
from serving.contracts.model_specs import TCN_PLANS
from serving.price.advice import Outcomes, best_index, elasticity, outcomes
from serving.price.features import PricedSeries, priced_series
from serving.price.rails import NoFeasiblePrice, PriceRange, candidate_prices, price_range, probe_prices
from serving.price.schemas import PriceCandidate, PriceRequest, PriceResponse
from serving.runtime.metrics import StageTimer
from serving.runtime.runtime import Runtime

RANGE_TOLERANCE = 0.005  # prices within 0.5 % of the seen range count as seen (cent rounding)


async def price(rt: Runtime, req: PriceRequest) -> PriceResponse:
    timer = StageTimer(rt.metrics, "price")
    with timer.stage("features"):
        plans = plans_model(rt)
        name = plans or rt.settings.forecast_model
        model = rt.model(name)
        series = priced_series(rt.artifacts.need("forecast"), req.store_id, req.item_id)
        try:
            rng = price_range(
                series.current_price,
                req.unit_cost,
                max_change_pct=req.max_change_pct,
                min_margin_pct=req.min_margin_pct,
                min_price=req.min_price,
                max_price=req.max_price,
            )
        except NoFeasiblePrice as exc:
            raise InvalidInput([exc.field], str(exc)) from None
        grid = candidate_prices(rng, req.candidates)
        rows = np.concatenate([grid, probe_prices(grid), [series.current_price]])
        inputs = series.plans_at(rows) if plans else series.inputs_at(rows)
    with timer.stage("model"):
        out = await rt.infer(name, inputs)
    with timer.stage("advice"):
        # The plans model answers [1, K, ...]: its one row's plans are the rows' answers.
        per_price = {k: np.asarray(v[0] if plans else v, dtype=np.float64) for k, v in out.items()}
        q, mean = per_price["quantiles"], per_price.get("mean")
        days = min(req.horizon_days, q.shape[1])
        res = outcomes(rows, q, mean, series.sales.quantiles, days, req.unit_cost, req.stock)
        answer = _answer(req, series, res, len(grid), rng, days)
    answer.model_versions, answer.timings_ms = {name: model.version}, timer.ms
    return answer


def plans_model(rt: Runtime) -> str | None:
    """The plans model when it is served and, where the manifest says, exported from the forecaster's own
    checkpoint (else its answers could differ from /v1/forecast's); None: the rows path through the forecaster."""
    if TCN_PLANS.name not in rt.models():
        return None
    models = (rt.manifest or {}).get("models") or {}
    ours, its = (models.get(n, {}).get("checkpoint_sha256") for n in (rt.settings.forecast_model, TCN_PLANS.name))
    return TCN_PLANS.name if ours is None or its is None or ours == its else None


def _answer(
    req: PriceRequest, series: PricedSeries, res: Outcomes, n: int, rng: PriceRange, days: int
) -> PriceResponse:
    """Rows 0..n-1 are the candidates, n and n + 1 the probes below and above, n + 2 the current price."""
    current = series.current_price
    value = res.objective(req.objective)
    best = best_index(value[:n], res.price[:n], current)
    seen = (series.seen_low * (1 - RANGE_TOLERANCE), series.seen_high * (1 + RANGE_TOLERANCE))

    def row(i: int) -> PriceCandidate:
        p = float(res.price[i])
        return PriceCandidate(
            price=round(p, 4),
            change_pct=round(100.0 * (p / current - 1.0), 3),
            margin_pct=round(100.0 * (p / req.unit_cost - 1.0), 3) if req.unit_cost > 0 else None,
            units_expected=float(res.units[i]),
            units_p10=float(res.p10[i]),
            units_p50=float(res.p50[i]),
            units_p90=float(res.p90[i]),
            revenue=float(res.revenue[i]),
            profit=float(res.profit[i]),
            outside_training_range=not seen[0] <= p <= seen[1],
        )

    flags = []
    if best == 0 and value[n] > value[best] + 1e-9:
        flags.append(f"clipped_by_{rng.low_rule}")
    if best == n - 1 and value[n + 1] > value[best] + 1e-9:
        flags.append(f"clipped_by_{rng.high_rule}")
    recommended = row(best)
    if recommended.outside_training_range:
        flags.append("outside_training_range")
    if req.stock is not None and res.units[best] < res.demand[best] * 0.99:
        flags.append("stock_limits_sales")
    notes = []
    if recommended.outside_training_range:
        notes.append(
            f"{recommended.price:.2f} lies outside the prices this series sold at "
            f"({series.seen_low:.2f}..{series.seen_high:.2f}): the demand there is the model's extrapolation"
        )
    if days < req.horizon_days:
        notes.append(f"the forecaster covers {days} days")
    return PriceResponse(
        store_id=req.store_id,
        item_id=req.item_id,
        objective=req.objective,
        horizon_days=days,
        unit_cost=req.unit_cost,
        current_price=current,
        recommended=recommended,
        current=row(n + 2),
        candidates=[row(i) for i in range(n)],
        price_floor=round(rng.low, 4),
        price_ceiling=round(rng.high, 4),
        floor_set_by=rng.low_rule,
        ceiling_set_by=rng.high_rule,
        training_price_low=series.seen_low,
        training_price_high=series.seen_high,
        elasticity=elasticity(res.price[: n + 2], res.demand[: n + 2]),
        flags=flags,
        note="; ".join(notes),
        model_versions={},
        timings_ms={},
    )
