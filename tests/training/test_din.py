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


@pytest.mark.parametrize("activation", ["dice", "prelu"])
@pytest.mark.parametrize("pooling", ["attention", "sum"])
def test_shapes_and_padding_changes_nothing(activation, pooling):
    torch.manual_seed(0)
    m = DINModel(cfg(activation=activation, pooling=pooling))
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
