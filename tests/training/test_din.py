"""DIN model: shapes, masking, attention vs sum pooling, Dice statistics, loss decreases."""

import pytest
import torch

from training.models.din import Dice, DINConfig, DINModel

L = 7


def cfg(**kw) -> DINConfig:
    base = dict(
        n_items=40,
        n_categories=5,
        user_feature_cardinalities=(3, 2),
        max_hist=L,
        emb_dim=4,
        attention_hidden=(8, 4),
        head_hidden=(8,),
    )
    return DINConfig(**{**base, **kw})


def batch(b: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(1, 41, (b, L), generator=g)
    length = torch.tensor([0, 1, 3, 7, 2, 5][:b])
    pad = torch.arange(L)[None, :] >= length[:, None]
    hist = hist.masked_fill(pad, 0)
    cats = (hist % 5 + 1).masked_fill(pad, 0)
    cand = torch.randint(1, 41, (b,), generator=g)
    feats = torch.stack([torch.randint(0, 4, (b,), generator=g), torch.randint(0, 3, (b,), generator=g)], 1)
    return hist, cats, length, cand, cand % 5 + 1, feats


@pytest.mark.parametrize("extras", [{}, {"id_bias": True}])
@pytest.mark.parametrize("activation", ["dice", "prelu"])
@pytest.mark.parametrize("pooling", ["attention", "sum"])
def test_shapes_and_padding_changes_nothing(activation, pooling, extras):
    torch.manual_seed(0)
    m = DINModel(cfg(activation=activation, pooling=pooling, **extras))
    if m.item_bias is not None:  # zero at start; random here so that a leak through the padding would show
        torch.nn.init.normal_(m.item_bias.weight)
    hist, cats, length, cand, ccat, uf = batch()
    pad = torch.arange(L)[None, :] >= length[:, None]
    noisy_h = hist.masked_scatter(pad, torch.randint(1, 41, (int(pad.sum()),)))
    noisy_c = cats.masked_scatter(pad, torch.randint(1, 6, (int(pad.sum()),)))
    m.train()  # Dice's batch statistics must ignore the padding too
    torch.manual_seed(1)
    a = m(hist, cats, length, cand, ccat, uf)
    torch.manual_seed(1)
    b = m(noisy_h, noisy_c, length, cand, ccat, uf)
    assert a.shape == (6,) and torch.allclose(a, b, atol=1e-6)
    m.eval()
    assert torch.allclose(m(hist, cats, length, cand, ccat, uf), m(noisy_h, noisy_c, length, cand, ccat, uf), atol=1e-6)
    # Real history positions do change the score.
    changed = hist.clone()
    changed[3, 2] = changed[3, 2] % 40 + 1
    assert not torch.isclose(m(hist, cats, length, cand, ccat, uf)[3], m(changed, cats, length, cand, ccat, uf)[3])


def test_longer_padding_changes_nothing():
    torch.manual_seed(0)
    m = DINModel(cfg()).eval()
    hist, cats, length, cand, ccat, uf = batch()
    wide_h = torch.cat([hist, torch.randint(1, 41, (6, 5))], dim=1)
    wide_c = torch.cat([cats, torch.randint(1, 6, (6, 5))], dim=1)
    assert torch.allclose(m(hist, cats, length, cand, ccat, uf), m(wide_h, wide_c, length, cand, ccat, uf), atol=1e-6)


def test_attention_depends_on_candidate_but_sum_pooling_does_not():
    torch.manual_seed(0)
    att = DINModel(cfg(pooling="attention")).eval()
    hist, cats, _length, cand, ccat, _uf = batch()
    h = torch.cat([att.item_emb(hist), att.cat_emb(cats)], dim=-1)
    c = torch.cat([att.item_emb(cand), att.cat_emb(ccat)], dim=-1)
    ce = c.unsqueeze(1).expand_as(h)
    w = att.attention(torch.cat([h, ce, h - ce, h * ce], dim=-1)).squeeze(-1)
    w_other = att.attention(torch.cat([h, ce.roll(1, 0), h - ce.roll(1, 0), h * ce.roll(1, 0)], dim=-1)).squeeze(-1)
    assert not torch.allclose(w, w_other)
    summ = DINModel(cfg(pooling="sum"))
    assert summ.attention is None
    assert not any(k.startswith("attention") for k in summ.state_dict())


def test_blockwise_activation_unit_equals_the_mlp_on_the_concatenation():
    torch.manual_seed(0)
    m = DINModel(cfg(pooling="attention"))
    hist, cats, length, cand, ccat, _uf = batch()
    mask = (torch.arange(L)[None, :] < length[:, None]).float()
    h = torch.cat([m.item_emb(hist), m.cat_emb(cats)], dim=-1)
    c = torch.cat([m.item_emb(cand), m.cat_emb(ccat)], dim=-1)
    ce = c.unsqueeze(1).expand_as(h)
    for mode in (m.train, m.eval):
        mode()
        want = m.attention(torch.cat([h, ce, h - ce, h * ce], dim=-1), mask).squeeze(-1)
        assert torch.allclose(m.activation_weights(h, c, mask), want, atol=1e-5)


def test_empty_history_is_finite():
    m = DINModel(cfg()).eval()
    z = torch.zeros(3, L, dtype=torch.long)
    out = m(z, z, torch.zeros(3, dtype=torch.long), torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3]), z[:, :2])
    assert torch.isfinite(out).all()


def test_dice_uses_masked_batch_stats_in_training_and_running_stats_in_eval():
    d = Dice(2, momentum=1.0)
    x = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, -100.0]]])  # the last row is padding
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    d.train()
    d(x, mask)
    assert torch.allclose(d.running_mean, torch.tensor([2.0, 4.0]))
    assert torch.allclose(d.running_var, torch.tensor([1.0, 4.0]))
    d.eval()
    y = d(torch.tensor([[2.0, 4.0]]))  # at the mean p = 1/2: y = x/2 + alpha x/2 with alpha = 0
    assert torch.allclose(y, torch.tensor([[1.0, 2.0]]))


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    m = DINModel(cfg())
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x = batch()
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m(*x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_user_features_enter_the_score_and_can_be_absent():
    torch.manual_seed(0)
    m = DINModel(cfg()).eval()
    x = batch()
    other = x[5].clone()
    other[:, 0] = (other[:, 0] + 1) % 4
    assert not torch.allclose(m(*x), m(*x[:5], other))
    bare = DINModel(cfg(user_feature_cardinalities=())).eval()
    assert bare(*x[:5], torch.zeros(6, 0, dtype=torch.long)).shape == (6,)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="pooling"):
        cfg(pooling="mean")
    with pytest.raises(ValueError, match="activation"):
        cfg(activation="relu")


def test_id_biases_add_to_the_logit_and_default_off():
    torch.manual_seed(0)
    plain = DINModel(cfg())
    assert plain.item_bias is None
    assert not any("bias." in k and k.split(".")[0] in ("item_bias", "cat_bias") for k in plain.state_dict())
    m = DINModel(cfg(id_bias=True)).eval()
    x = batch()
    before = m(*x)  # biases start at zero: the paper's model
    with torch.no_grad():
        m.item_bias.weight[x[3][0]] = 1.5
        m.cat_bias.weight[x[4][1]] = -0.5
    delta = m(*x) - before
    want = 1.5 * (x[3] == x[3][0]).float() - 0.5 * (x[4] == x[4][1]).float()
    assert torch.allclose(delta, want, atol=1e-6)


def test_mba_penalty_shrinks_the_candidate_biases_like_their_embeddings():
    from training.tasks.din import mba_penalty

    torch.manual_seed(0)
    plain = DINModel(DINConfig(n_items=6, n_categories=2, max_hist=3, emb_dim=2))
    biased = DINModel(DINConfig(n_items=6, n_categories=2, max_hist=3, emb_dim=2, id_bias=True))
    biased.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        biased.item_bias.weight.copy_(torch.arange(7.0)[:, None])
        biased.cat_bias.weight.copy_(torch.tensor([[0.0], [2.0], [3.0]]))
    hist = torch.tensor([[3, 3, 0], [5, 0, 0]])  # history items: embeddings only, never biases
    inputs = (
        hist,
        torch.tensor([[1, 1, 0], [2, 0, 0]]),
        torch.tensor([2, 1]),
        torch.tensor([5, 4]),
        torch.tensor([2, 1]),
    )
    inv = (torch.tensor([0.0, 1, 1, 0.5, 0.25, 0.1, 1]), torch.tensor([0.0, 0.5, 0.2]))
    extra = mba_penalty(biased, (*inputs, torch.zeros(2, 0)), inv) - mba_penalty(
        plain, (*inputs, torch.zeros(2, 0)), inv
    )
    want = 5.0**2 * 0.1 + 4.0**2 * 0.25 + 2.0**2 * 0.5 + 3.0**2 * 0.2  # candidates 5, 4; categories 1, 2
    assert torch.isclose(extra, torch.tensor(want))


def test_bias_warm_start_makes_the_untrained_model_the_smoothed_ctr():
    import numpy as np

    from training.data import behavior
    from training.tasks.din import init_biases
    from training.tasks.rec_samples import impression_rows, model_ids

    log, _ = behavior.generate(behavior.PROFILES["tiny"], seed=1)
    cat = log.catalogue
    rows = impression_rows(log, log, max_len=L)
    m = DINModel(cfg(n_items=cat.n_items, n_categories=cat.n_categories, user_feature_cardinalities=(), id_bias=True))
    init_biases(m, rows, cat.category, prior_weight=20.0)
    with torch.no_grad():  # without the MLP's share the untrained model is the biases alone
        m.head.linears[-1].weight.zero_()
    idx = np.arange(len(rows))
    hist, length = rows.histories(idx)
    c = cat.category
    x = (model_ids(hist, length), model_ids(c[hist], length), torch.from_numpy(length.astype(np.int64)))
    got = m.eval()(*x, model_ids(rows.item), model_ids(c[rows.item]), torch.zeros(len(rows), 0, dtype=torch.long))
    # Two-level smoothing by hand: global -> category -> item, 20 pseudo-impressions each.
    p = rows.label.mean()
    shown_c, clicked_c = np.bincount(c[rows.item], minlength=cat.n_categories), np.zeros(cat.n_categories)
    np.add.at(clicked_c, c[rows.item], rows.label)
    rate_c = (clicked_c + 20 * p) / (shown_c + 20)
    shown, clicked = np.bincount(rows.item, minlength=cat.n_items), np.zeros(cat.n_items)
    np.add.at(clicked, rows.item, rows.label)
    rate = (clicked + 20 * rate_c[c]) / (shown + 20)
    want = np.log(rate / (1 - rate))[rows.item]
    assert np.allclose(got.detach().numpy(), want, atol=1e-4)


def test_svd_init_starts_co_liked_items_close_and_keeps_the_rest():
    from types import SimpleNamespace

    import numpy as np

    from training.tasks.din import init_item_embeddings

    torch.manual_seed(0)
    m = DINModel(cfg(n_items=6, n_categories=2, emb_dim=2))
    before = m.item_emb.weight.detach().clone()
    # Users 0-2 like items 0 and 1, users 3-5 items 2 and 3; item 4 is only shown, item 5 never.
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0])
    items = np.array([0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 4])
    labels = np.array([1.0] * 12 + [0.0], dtype=np.float32)
    init_item_embeddings(m, SimpleNamespace(user=users, item=items, label=labels), n_users=6)
    w = m.item_emb.weight.detach()
    assert torch.equal(w[0], before[0]) and torch.equal(w[5:], before[5:])  # padding, never-liked rows stay
    e = torch.nn.functional.normalize(w[1:5], dim=1)
    assert e[0] @ e[1] > 0.99 and e[2] @ e[3] > 0.99 and float(e[0] @ e[2]) < 0.5


def test_bad_stop_on_is_refused():
    from training.tasks.din import DINTrainConfig

    with pytest.raises(ValueError, match="stop_on"):
        DINTrainConfig(stop_on="loss")


def test_id_bias_din_exports_with_the_same_onnx_signature(tmp_path):
    """The biases live inside the graph: the served DIN keeps the spec's inputs and output, and ONNX Runtime
    matches PyTorch with biases that are not zero (export_onnx checks the names against the spec)."""
    onnx = pytest.importorskip("onnx")
    from export.models import EXPORTERS
    from export.onnx_export import check_parity, export_onnx
    from serving.contracts.model_specs import SPECS

    spec, exporter = SPECS["din"], EXPORTERS["din"]
    _, config = exporter.tiny()
    module = exporter.build({**config, "id_bias": True})
    with torch.no_grad():
        for table in (module.model.item_bias, module.model.cat_bias):  # the scorer wraps the DIN
            table.weight.uniform_(-1.0, 1.0)
    result = export_onnx(module, spec, {**config, "id_bias": True}, tmp_path / "din.onnx")
    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == spec.input_names
    assert [o.name for o in graph.output] == spec.output_names
    check_parity(module, spec, {**config, "id_bias": True}, result.path, batches=(1, 3))
