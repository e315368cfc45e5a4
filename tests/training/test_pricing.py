"""The pricing evaluation: the generator's price truth replays exactly, the oracle is the true optimum, the
TCN's price head is a log-log curve, and `python -m training price-eval` runs end to end on tiny data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from serving.price.rails import candidate_prices
from training.__main__ import main as training_main
from training.data.sales import PROFILES, SalesConfig, generate, price_truth, split_last_days
from training.models.tcn import TCNConfig, TCNForecaster
from training.pricing import baselines
from training.pricing.cases import build_cases, current_prices

# No seasonality, events, drift, growth or launches: only price and promotion move the true demand.
FLAT = SalesConfig(
    n_stores=2, n_items=6, n_categories=2, n_days=200, weekly_amp=0.0, yearly_amp=0.0, event_scale=0.0,
    drift_sd=0.0, growth_sigma=0.0, new_frac=0.0, promo_prob=0.3, price_changes_per_year=6.0,
)  # fmt: skip


def test_price_truth_replays_the_generators_price_effects():
    panel = generate(FLAT, seed=3)
    truth = price_truth(FLAT, seed=3)
    steady = truth.expected_at(panel.expected, panel.price, panel.promo, np.float64(5.0))
    jumps = np.abs(np.diff(np.log(panel.expected), axis=1)).max()
    assert jumps > 0.1  # promotions and price changes move the demand
    # Without them only the store's own growth remains: tiny day-to-day steps.
    assert np.abs(np.diff(np.log(steady), axis=1)).max() < 2e-3
    assert truth.elasticity.shape == (FLAT.n_series,) and np.all(truth.elasticity < 0)


def _cases(max_change_pct: float = 25.0):
    cfg = PROFILES["tiny"]
    panel = generate(cfg, seed=0)
    history, test = split_last_days(panel, 28)
    cases = build_cases(history, test, price_truth(cfg, 0), max_change_pct=max_change_pct, min_margin_pct=10.0)
    return history, cases


def test_oracle_price_is_the_true_optimum_within_the_rails():
    _, cases = _cases()
    oracle = cases.oracle_price()
    fine = np.stack([np.linspace(lo, hi, 2001) for lo, hi in zip(cases.low, cases.high, strict=True)])
    best = cases.true_profit(fine).max(axis=1)
    np.testing.assert_allclose(cases.true_profit(oracle), best, rtol=1e-5)
    assert np.all(oracle >= cases.low - 1e-9) and np.all(oracle <= cases.high + 1e-9)


def test_current_price_skips_promotion_days():
    price = np.array([[5.0, 5.0, 4.0], [np.nan, 3.0, 2.0]])
    promo = np.array([[0, 0, 1], [0, 1, 1]])
    np.testing.assert_allclose(current_prices(price, promo), [5.0, 2.0])  # all-promotion rows: the last price


def test_baselines_stay_within_the_rails():
    history, cases = _cases()
    grids = [candidate_prices(r, 11) for r in cases.ranges]
    loglog, slopes = baselines.loglog(history, cases, grids)
    forest = baselines.random_forest(history, cases, grids, n_estimators=5)
    cost_plus, markup = baselines.cost_plus(cases)
    assert markup > 0 and np.isfinite(slopes).all()
    for p in (baselines.keep(cases), cost_plus, loglog, forest):
        assert p.shape == cases.current.shape
        assert np.all(p >= cases.low - 1e-6) and np.all(p <= cases.high + 1e-6)


@torch.no_grad()
def test_tcn_price_head_is_log_log_and_ignores_price_in_the_mlp():
    torch.manual_seed(0)
    cfg = TCNConfig(n_past=5, n_future=4, n_stores=2, n_categories=2, horizon=6, channels=8, dilations=(1, 2),
                    price_elasticity=True)  # fmt: skip
    model = TCNForecaster(cfg).eval()
    g = torch.Generator().manual_seed(1)
    x = {
        "past_features": torch.randn(3, 5, 20, generator=g),
        "future_features": torch.randn(3, 4, 6, generator=g),
        "series_scale": torch.tensor([1.0, 2.0, 5.0]),
        "store_ids": torch.tensor([1, 2, 0]),
        "category_ids": torch.tensor([2, 1, 1]),
    }
    _, base = model(**x)
    shifted = {**x, "future_features": x["future_features"].clone()}
    shifted["future_features"][:, 0] += 0.2  # 22 % dearer on every day
    q, dear = model(**shifted)
    ratio = (dear / base).numpy()
    # One factor per series on every day: the MLP, which would bend it day by day, does not see the price.
    assert np.all(ratio <= 1.0) and np.allclose(ratio, ratio[:, :1], rtol=1e-5)
    beta = np.log(ratio[:, 0]) / 0.2
    assert np.all(beta <= 0)
    assert torch.all(q[..., 1:] >= q[..., :-1])


@pytest.mark.slow
def test_price_eval_runs_end_to_end_on_tiny_data(tmp_path: Path):
    assert training_main(["train", "tcn", "--profile", "tiny", "--out", str(tmp_path), "--max-epochs", "1"]) == 0
    out = tmp_path / "results"
    args = ["price-eval", "--profile", "tiny", "--checkpoint", str(tmp_path / "checkpoints" / "tcn.pt"), "--out",
            str(out), "--reports", str(tmp_path), "--trees", "5", "--max-change-pct", "25"]  # fmt: skip
    assert training_main(args) == 0
    md = (out / "pricing_tiny_change25.md").read_text()
    for method in ("TCN advice", "keep the current price", "cost-plus", "log-log regression", "random forest"):
        assert method in md
    assert (out / "pricing_tiny_change25.png").stat().st_size > 10_000
    report = json.loads((tmp_path / "reports" / "pricing_tiny_change25.json").read_text())
    assert all(0.0 < v <= 1.0 + 1e-9 for v in report["methods"].values())


def test_generated_profiles_keep_their_price_truth_shape():
    cfg = replace(PROFILES["tiny"], n_stores=3)
    assert price_truth(cfg, 1).promo_lift.shape == (cfg.n_series,)
