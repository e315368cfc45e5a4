"""TCN forecaster: shapes, causality, receptive field, monotone quantiles, the two forward paths agree."""

import numpy as np
import pytest
import torch

from training.models.tcn import TCNConfig, TCNForecaster

N_PAST, N_FUT, H = 5, 3, 6


def _model(seed: int = 0, **kw) -> TCNForecaster:
    torch.manual_seed(seed)
    cfg = TCNConfig(n_past=N_PAST, n_future=N_FUT, n_stores=3, n_categories=2, horizon=H, channels=8, **kw)
    return TCNForecaster(cfg).eval()


def _inputs(b: int, length: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "past_features": torch.randn(b, N_PAST, length, generator=g),
        "future_features": torch.randn(b, N_FUT, H, generator=g),
        "series_scale": 1.0 + torch.rand(b, generator=g) * 5,
        "store_ids": torch.randint(0, 4, (b,), generator=g),
        "category_ids": torch.randint(0, 3, (b,), generator=g),
    }


def test_shapes_and_ordered_non_negative_quantiles():
    model = _model(dilations=(1, 2, 4))
    q, mean = model(**_inputs(7, 40))
    assert q.shape == (7, H, 3) and mean.shape == (7, H)
    assert torch.all(q >= 0) and torch.all(mean > 0)
    assert torch.all(q[..., 1:] >= q[..., :-1])


def test_quantiles_ordered_for_any_raw_output_and_five_levels():
    model = _model(dilations=(1, 2), quantiles=(0.05, 0.1, 0.5, 0.9, 0.95))
    x = _inputs(16, 20)
    static = model.static(x["series_scale"], x["store_ids"], x["category_ids"])
    q, _ = model.decode(torch.randn(16, 8), static, x["future_features"])
    assert q.shape[-1] == 5 and torch.all(q[..., 1:] > q[..., :-1])  # strictly, before the clamp at 0
    # Huge weights push raw outputs far to both sides (softplus may underflow to 0: ties, never inversions).
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20.0)
    q, _ = model.decode(torch.randn(16, 8) * 50, static, x["future_features"])
    assert q.abs().max() > 1e3 and torch.all(q[..., 1:] >= q[..., :-1])


def test_receptive_field_is_exact():
    cfg = TCNConfig(
        n_past=N_PAST, n_future=N_FUT, n_stores=3, n_categories=2, horizon=H, channels=4, dilations=(1, 2, 4, 8)
    )
    assert cfg.receptive_field == 1 + 2 * (1 + 2 + 4 + 8)
    model = TCNForecaster(cfg)
    with torch.no_grad():  # all weights and inputs positive: every ReLU passes, so gradient = dependency
        for p in model.parameters():
            p.copy_(torch.rand_like(p) * 0.1 + 0.01)
    length = cfg.receptive_field + 10
    past = torch.rand(1, N_PAST, length, requires_grad=True)
    static = model.static(torch.ones(1), torch.ones(1, dtype=torch.long), torch.ones(1, dtype=torch.long))
    model.encode(past, static)[0, -1].sum().backward()
    reached = (past.grad[0].abs().sum(0) > 0).numpy()
    assert reached[-cfg.receptive_field :].all() and not reached[: -cfg.receptive_field].any()


def test_default_receptive_field_covers_a_year_and_weeks():
    cfg = TCNConfig(n_past=1, n_future=1, n_stores=1, n_categories=1)
    assert cfg.receptive_field >= 365 + 3 * 7
    assert cfg.context_days <= cfg.receptive_field  # every served input day can reach the forecast


def test_encoder_is_causal():
    model = _model(dilations=(1, 2, 4, 8))
    x = _inputs(3, 50)
    static = model.static(x["series_scale"], x["store_ids"], x["category_ids"])
    base = model.encode(x["past_features"], static)
    t = 30
    changed = x["past_features"].clone()
    changed[:, :, t] += 10.0
    after = model.encode(changed, static)
    assert torch.equal(after[:, :t], base[:, :t])  # exactly: earlier positions never see day t
    assert not torch.allclose(after[:, t:], base[:, t:])


def test_future_day_only_moves_its_own_forecast():
    model = _model(dilations=(1, 2))
    x = _inputs(4, 30)
    q0, m0 = model(**x)
    changed = dict(x, future_features=x["future_features"].clone())
    changed["future_features"][:, :, 3] += 5.0
    q1, m1 = model(**changed)
    same = [d for d in range(H) if d != 3]
    assert torch.equal(q1[:, same], q0[:, same]) and torch.equal(m1[:, same], m0[:, same])
    assert not torch.allclose(m1[:, 3], m0[:, 3])


def test_training_path_matches_forward_at_the_last_origin():
    model = _model(dilations=(1, 2, 4))
    x = _inputs(5, 40)
    q, mean = model(**x)
    q_s, mean_s = model.forecast_origins(
        x["past_features"],
        x["future_features"].unsqueeze(1),
        x["series_scale"],
        x["store_ids"],
        x["category_ids"],
    )
    scale = x["series_scale"].reshape(-1, 1)
    torch.testing.assert_close(torch.relu(q_s[:, 0]) * scale.unsqueeze(-1), q)
    torch.testing.assert_close(mean_s[:, 0] * scale, mean)


def test_pricing_path_answers_each_plan_as_forward_does():
    model = _model(dilations=(1, 2, 4), price_elasticity=True)
    x = _inputs(3, 40)
    plans = torch.randn(3, 4, N_FUT, H, generator=torch.Generator().manual_seed(2))
    q, mean = model.forecast_plans(x["past_features"], plans, x["series_scale"], x["store_ids"], x["category_ids"])
    assert q.shape == (3, 4, H, 3) and mean.shape == (3, 4, H)
    for k in range(4):
        q_k, mean_k = model(**{**x, "future_features": plans[:, k]})
        torch.testing.assert_close(q[:, k], q_k)
        torch.testing.assert_close(mean[:, k], mean_k)


def test_outputs_scale_with_series_scale_inputs_held():
    model = _model(dilations=(1, 2))
    x = _inputs(2, 20)
    q1, m1 = model(**x)
    # Same scaled inputs but a doubled scale: the embedding of log(scale) changes too, so only check
    # that units come out proportional when that input is neutralised.
    with torch.no_grad():
        model.global_context.weight[:, -1] = 0.0
        model.local[0].weight[:, -1] = 0.0
        model.encoder[0].conv1.linear.weight[:, N_PAST + 8 :: N_PAST + 9] = 0.0
        model.encoder[0].skip.weight[:, -1] = 0.0
    q1, m1 = model(**x)
    q2, m2 = model(**dict(x, series_scale=x["series_scale"] * 2))
    torch.testing.assert_close(q2, 2 * q1)
    torch.testing.assert_close(m2, 2 * m1)


@pytest.mark.slow  # the dynamo exporter takes ~10-20 s on 2 shared cores
def test_onnx_export_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = _model(dilations=(1, 2, 4))
    names = ["past_features", "future_features", "series_scale", "store_ids", "category_ids"]
    x = _inputs(2, 24)
    path = tmp_path / "tcn.onnx"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        model,
        tuple(x[n] for n in names),
        str(path),
        input_names=names,
        output_names=["quantiles", "mean"],
        dynamic_shapes={n: {0: batch} for n in names},
        dynamo=True,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 5):
        xb = _inputs(b, 24, seed=b)
        q, mean = sess.run(None, {n: xb[n].numpy() for n in names})
        tq, tmean = model(**xb)
        np.testing.assert_allclose(q, tq.detach().numpy(), atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(mean, tmean.detach().numpy(), atol=1e-5, rtol=1e-4)
