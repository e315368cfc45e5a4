"""TCN training task: batches are causal, the loss is right and goes down, run() writes what export needs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export.features import sales_for_export
from serving.forecast.features import FeatureSpec
from training.checkpoint import config_from_dict, load_checkpoint
from training.data.fingerprints import sales_fingerprint
from training.data.sales import PROFILES as SALES_PROFILES
from training.data.sales import generate, save_dir, split_last_days
from training.data.schema import SalesPanel
from training.models.tcn import TCNConfig, TCNForecaster
from training.tasks.base import TrainArgs
from training.tasks.tcn import (
    MIN_OBS,
    PanelArrays,
    evaluate,
    forecast_loss,
    make_batch,
    run,
)

H, K = 5, 6


def _panel(n: int = 4, t: int = 120, seed: int = 0) -> SalesPanel:
    rng = np.random.default_rng(seed)
    units = rng.poisson(3.0, size=(n, t)).astype(np.float32)
    units[1, :40] = np.nan  # a late launch
    return SalesPanel(
        units=units,
        price=rng.uniform(1, 2, size=(n, t)).astype(np.float32),
        promo=(rng.random((n, t)) < 0.2).astype(np.float32),
        start_date=np.datetime64("2024-01-01"),
        store=np.arange(n, dtype=np.int32) % 2,
        item=np.arange(n, dtype=np.int32),
        category=np.arange(n, dtype=np.int32) % 3,
        store_ids=np.array(["a", "b"], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n)], dtype=object),
        events=(rng.random((t, 2)) < 0.1).astype(np.int8),
        event_names=("x", "y"),
    )


def _setup(panel: SalesPanel, context: int = 30):  # >= MIN_OBS, so origins can count
    spec = FeatureSpec(
        context_days=context, horizon=H, scale_days=7, event_names=panel.event_names, n_stores=2, n_categories=3
    )
    data = PanelArrays.from_panel(panel, pad=context + K)
    torch.manual_seed(0)
    cfg = TCNConfig(spec.n_past, spec.n_future, 2, 3, horizon=H, context_days=context, channels=8, dilations=(1, 2, 4))
    return spec, data, TCNForecaster(cfg).eval()


def _origin_forecasts(model, batch):
    return model.forecast_origins(
        batch["past"], batch["future_windows"], batch["series_scale"], batch["store_ids"], batch["category_ids"]
    )


def test_batch_shapes_and_masks():
    panel = _panel()
    spec, data, _ = _setup(panel)
    b = make_batch(data, np.array([0, 1]), np.array([90, 68]), spec, K, "cpu")
    w = spec.context_days + K - 1
    assert b["past"].shape == (2, spec.n_past, w) and b["future_windows"].shape == (2, K, spec.n_future, H)
    assert b["target"].shape == b["mask"].shape == (2, K, H)
    # Series 0: every origin counts. Series 1 launched on day 40: origins before day 40 + MIN_OBS - 1 do not.
    assert b["mask"][0].all()
    first_origin_day = 68 - K + 1
    ok = np.arange(first_origin_day, 69) >= 40 + MIN_OBS - 1
    assert ok.any() and not ok.all()
    assert b["mask"][1].any(dim=-1).numpy().tolist() == ok.tolist()
    # Targets are the next H days' units over the scale.
    expect = panel.units[0, 90 - K + 2 : 90 - K + 2 + H] / b["series_scale"][0].item()
    np.testing.assert_allclose(b["target"][0, 0].numpy(), expect, rtol=1e-6)


def test_no_origin_sees_its_future():
    """Changing sales after origin o, or covariates after day o + H, leaves o's forecast unchanged."""
    panel = _panel()
    spec, data, model = _setup(panel)
    end, j = 100, 2  # origin j of the window
    origin = end - K + 1 + j
    base_q, base_m = _origin_forecasts(model, make_batch(data, np.array([0]), np.array([end]), spec, K, "cpu"))
    changed = PanelArrays.from_panel(panel, pad=spec.context_days + K)
    changed.units = panel.units.copy()
    changed.units[0, origin + 1 :] *= 7.0  # its targets and the later days
    changed.price = panel.price.copy()
    changed.price[0, origin + H + 1 :] *= 3.0
    changed.promo = panel.promo.copy()
    changed.promo[0, origin + H + 1 :] = 1.0
    q, m = _origin_forecasts(model, make_batch(changed, np.array([0]), np.array([end]), spec, K, "cpu"))
    torch.testing.assert_close(q[0, : j + 1], base_q[0, : j + 1], rtol=0, atol=0)
    torch.testing.assert_close(m[0, : j + 1], base_m[0, : j + 1], rtol=0, atol=0)
    assert not torch.allclose(m[0, j + 1 :], base_m[0, j + 1 :])  # later origins do see those days


def test_forecast_loss_by_hand():
    q = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]])  # [1, H=2, 3]
    mean = torch.tensor([[2.0, 1.0]])
    target = torch.tensor([[4.0, 0.0]])
    levels = torch.tensor([0.1, 0.5, 0.9])
    # day 0: pinball 0.1*3 + 0.5*2 + 0.9*1 = 2.2, sq err 4; day 1: 0.9*0 + 0.5*0 + 0.1*1 = 0.1, sq err 1
    got = forecast_loss(q, mean, target, torch.ones(1, 2), levels, mean_weight=0.5)
    assert got.item() == pytest.approx(((2.2 + 2.0) + (0.1 + 0.5)) / 2)
    masked = forecast_loss(q, mean, target, torch.tensor([[1.0, 0.0]]), levels, mean_weight=0.5)
    assert masked.item() == pytest.approx(2.2 + 2.0)


def test_loss_decreases():
    panel = _panel()
    spec, data, model = _setup(panel)
    model.train()
    b = make_batch(data, np.array([0, 2, 3]), np.array([80, 95, 110]), spec, K, "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    levels = torch.tensor(model.cfg.quantiles)
    losses = []
    for _ in range(40):
        q, m = _origin_forecasts(model, b)
        loss = forecast_loss(q, m, b["target"], b["mask"], levels, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_evaluate_scores_a_perfect_forecast():
    panel = generate(SALES_PROFILES["tiny"], seed=1)
    history, test = split_last_days(panel, 28)
    actual = np.nan_to_num(test.units)
    q = np.stack([actual, actual, actual], axis=-1)
    rep = evaluate(history, test, q, actual, (0.1, 0.5, 0.9))
    tcn = rep["methods"]["TCN"]
    assert tcn["wrmsse"] == 0.0 and tcn["mase"] == 0.0 and tcn["coverage_p10_p90"] == 1.0
    assert rep["methods"]["seasonal naive (lag 7)"]["wrmsse"] > 0
    assert 0 < rep["methods"]["oracle (true expected demand)"]["wrmsse_vs_naive"] < 1


def test_run_writes_checkpoint_and_report_that_rebuild_the_model(tmp_path):
    data_dir = save_dir(generate(SALES_PROFILES["tiny"], seed=0), tmp_path / "sales")
    args = TrainArgs(profile="tiny", data_dir=Path(data_dir), out_dir=tmp_path / "art", max_epochs=1)
    report = run(args)
    body = json.loads((tmp_path / "art" / "reports" / "tcn.json").read_text())
    assert set(body["methods"]) == {"seasonal naive (lag 7)", "TCN", "oracle (true expected demand)"}
    assert 0.0 <= body["methods"]["TCN"]["coverage_p10_p90"] <= 1.0
    assert body["receptive_field_days"] == report["receptive_field_days"]
    ck = load_checkpoint(tmp_path / "art" / "checkpoints" / "tcn.pt")
    cfg = config_from_dict(TCNConfig, ck["config"])
    spec = FeatureSpec.from_dict(ck["extra"]["feature_spec"])
    assert (cfg.n_past, cfg.n_future, cfg.context_days) == (spec.n_past, spec.n_future, spec.context_days)
    model = TCNForecaster(cfg)
    model.load_state_dict(ck["state_dict"])  # strict: the stored config rebuilds exactly this model
    assert ck["extra"]["input_names"] == [
        "past_features",
        "future_features",
        "series_scale",
        "store_ids",
        "category_ids",
    ]
    assert ck["data_fingerprint"] and ck["metrics"]["wrmsse"] == pytest.approx(report["methods"]["TCN"]["wrmsse"])
    # export recomputes the fingerprint on the panel it reads from the same folder and must get the stored one
    assert ck["data_fingerprint"] == sales_fingerprint(sales_for_export("tiny", 0, Path(data_dir)))
