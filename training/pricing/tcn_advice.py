"""Our advice: the trained TCN asked at every candidate price, then the gateway's own decision rule.

The rows are those /v1/price sends (serving/price/features.py): a series' history window, and for the
forecast days the candidate as the shelf price without promotion; all candidates of a series share the
past. The model runs in PyTorch (the exported ONNX matches it within the export's parity tolerance), and
units, profit and the chosen price come from serving/price/advice.py, the code that answers /v1/price.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from serving.forecast.features import FeatureSpec, panel_calendar, shift_ids, take_windows, window_features
from serving.price.advice import best_index, elasticity, outcomes
from training.checkpoint import config_from_dict, load_checkpoint
from training.data.sales import calendar_events
from training.data.schema import SalesPanel
from training.models.tcn import TCNConfig, TCNForecaster
from training.pricing.cases import Cases
from training.tasks.tcn import PanelArrays

ROWS_PER_CALL = 512


@dataclass(frozen=True)
class Advice:
    price: np.ndarray  # [S] chosen price
    predicted_profit: list[np.ndarray]  # per case, over its grid
    elasticity: np.ndarray  # [S] the model's slope of log demand on log price over the grid
    demand_at_current: np.ndarray  # [S] expected units over the horizon at the current price (log-interpolated)


def load_tcn(path: Path) -> tuple[TCNForecaster, FeatureSpec, dict]:
    ck = load_checkpoint(path)
    model = TCNForecaster(config_from_dict(TCNConfig, ck["config"]))
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, FeatureSpec.from_dict(ck["extra"]["feature_spec"]), ck


@torch.no_grad()
def demand_at(
    model: TCNForecaster, spec: FeatureSpec, history: SalesPanel, cases: Cases, grids: list[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per case: (quantiles [K, H, n_q], mean [K, H]) at its K grid prices, forecast from the last history day."""
    pad = spec.context_days
    data = PanelArrays.from_panel(history, pad)
    # The forecast days' calendar: the generator's calendar is a function of the date (known in advance).
    future_events, _ = calendar_events(history.start_date + np.timedelta64(history.n_days, "D"), spec.horizon)
    data.calendar = panel_calendar(history.start_date, np.concatenate([history.events, future_events]), pad_before=pad)
    h, lctx, origin = spec.horizon, spec.context_days, history.n_days - 1
    extend = np.full((history.n_series, h), np.nan)
    data.units = np.concatenate([history.units, extend], axis=1)
    data.price = np.concatenate([history.price, extend], axis=1)
    data.promo = np.concatenate([history.promo, np.zeros_like(extend)], axis=1)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    per_call = max(ROWS_PER_CALL // max(len(g) for g in grids), 1)
    for lo in range(0, len(cases.series), per_call):
        idx = np.arange(lo, min(lo + per_call, len(cases.series)))
        series = cases.series[idx]
        u, pr, pm, cal = take_windows(
            data.units, data.price, data.promo, data.calendar, pad, series, np.full(len(series), origin), lctx, h
        )
        reps = np.array([len(grids[i]) for i in idx])
        rows = np.repeat(np.arange(len(idx)), reps)
        pr, pm = pr[rows].copy(), pm[rows].copy()
        pr[:, lctx:] = np.concatenate([grids[i] for i in idx])[:, None]
        pm[:, lctx:] = 0.0
        f = window_features(u[rows, :lctx], pr, pm, cal[rows], spec)
        q, mean = model(
            torch.as_tensor(f["past_features"]),
            torch.as_tensor(f["future_features"]),
            torch.as_tensor(f["series_scale"]),
            torch.as_tensor(shift_ids(history.store[series][rows], spec.n_stores)),
            torch.as_tensor(shift_ids(history.category[series][rows], spec.n_categories)),
        )
        q_parts = np.split(q.numpy(), np.cumsum(reps)[:-1])
        m_parts = np.split(mean.numpy(), np.cumsum(reps)[:-1])
        out.extend(zip(q_parts, m_parts, strict=True))
    return out


def advise(
    model: TCNForecaster,
    spec: FeatureSpec,
    levels: tuple[float, ...],
    history: SalesPanel,
    cases: Cases,
    grids: list[np.ndarray],
    horizon_days: int,
) -> Advice:
    demand = demand_at(model, spec, history, cases, grids)
    prices, profits, slopes, at_current = [], [], [], []
    for i, (grid, (q, mean)) in enumerate(zip(grids, demand, strict=True)):
        res = outcomes(grid, q, mean, levels, horizon_days, float(cases.cost[i]))
        prices.append(grid[best_index(res.profit, grid, float(cases.current[i]))])
        profits.append(res.profit)
        slope = elasticity(grid, res.demand)
        slopes.append(np.nan if slope is None else slope)
        log_d = np.log(np.maximum(res.demand, 1e-12))
        at_current.append(float(np.exp(np.interp(np.log(cases.current[i]), np.log(grid), log_d))))
    return Advice(np.array(prices), profits, np.array(slopes), np.array(at_current))
