"""Two-tower model: shapes, normalisation, masking, attention pooling, log-Q correction, loss decreases."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from training.models.two_tower import (
    TwoTower,
    TwoTowerConfig,
    in_batch_softmax_loss,
    price_bucket_edges,
    price_buckets,
    user_item_scores,
)

CFG = TwoTowerConfig(
    n_items=30,
    n_categories=4,
    n_brands=3,
    user_feature_cardinalities=(2, 5),
    max_hist=6,
    emb_dim=8,
    dim=12,
    hidden=(16,),
)
ATTN = replace(CFG, attn_heads=3, share_item_emb=True)  # the quick/full profiles' user tower


def user_batch(b: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(1, CFG.n_items + 1, (b, CFG.max_hist), generator=g)
    cats = torch.randint(1, CFG.n_categories + 1, (b, CFG.max_hist), generator=g)
    length = torch.tensor([0, 1, 3, 6, 2][:b])
    feats = torch.stack([torch.randint(0, 3, (b,), generator=g), torch.randint(0, 6, (b,), generator=g)], 1)
    return hist, cats, length, feats


def item_batch(n: int = 7):
    ids = torch.arange(1, n + 1)
    return ids, ids % CFG.n_categories + 1, ids % CFG.n_brands + 1, ids % CFG.n_price_buckets


@pytest.mark.parametrize("cfg", [CFG, ATTN], ids=["mean", "attention"])
def test_towers_shapes_and_unit_norm(cfg):
    torch.manual_seed(0)
    m = TwoTower(cfg).eval()
    u = m.user_tower(*user_batch())
    v = m.item_tower(*item_batch())
    assert u.shape == (5, CFG.dim) and v.shape == (7, CFG.dim)
    assert torch.allclose(u.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.allclose(v.norm(dim=-1), torch.ones(7), atol=1e-5)
    both = m(*user_batch(), *item_batch())
    assert torch.allclose(both[0], u) and torch.allclose(both[1], v)


@pytest.mark.parametrize("cfg", [CFG, ATTN], ids=["mean", "attention"])
def test_padded_history_changes_nothing(cfg):
    torch.manual_seed(0)
    m = TwoTower(cfg).eval()
    hist, cats, length, feats = user_batch()
    garbage_h, garbage_c = hist.clone(), cats.clone()
    pad = torch.arange(CFG.max_hist)[None, :] >= length[:, None]
    garbage_h[pad] = torch.randint(1, CFG.n_items + 1, (int(pad.sum()),))
    garbage_c[pad] = 0
    hist[pad], cats[pad] = 0, 0
    assert torch.allclose(m.user_tower(hist, cats, length, feats), m.user_tower(garbage_h, garbage_c, length, feats))
    # ... but the real positions do matter
    hist2 = hist.clone()
    hist2[3, 0] = (hist2[3, 0] % CFG.n_items) + 1
    assert not torch.allclose(m.user_tower(hist, cats, length, feats)[3], m.user_tower(hist2, cats, length, feats)[3])


def test_log_q_correction_shifts_logits_by_minus_log_q():
    torch.manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    ids = torch.arange(4)
    zero_q = in_batch_softmax_loss(u, v, ids, torch.zeros(4), 0.5)
    # Same log q for every item: the softmax is shift-invariant, the loss does not move.
    assert torch.allclose(zero_q, in_batch_softmax_loss(u, v, ids, torch.full((4,), -2.0), 0.5))
    # Reference: cross-entropy on u.v / T - log q, computed by hand.
    log_q = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    logits = u @ v.T / 0.5 - log_q[None, :]
    ref = -(logits.diag() - torch.logsumexp(logits, dim=1)).mean()
    assert torch.allclose(in_batch_softmax_loss(u, v, ids, log_q, 0.5), ref)
    # A popular item (large q) is penalised less as a negative: its logit column is lowered most.
    assert not torch.allclose(ref, zero_q)


def test_duplicate_items_are_not_negatives_of_each_other():
    u = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    v[1] = v[0]
    loss = in_batch_softmax_loss(u, v, torch.tensor([5, 5, 9]), torch.zeros(3), 1.0)
    logits = u @ v.T
    # row 0 competes only with item 9 (column 2), not with its own duplicate in column 1
    row0 = -(logits[0, 0] - torch.logsumexp(logits[0, [0, 2]], 0))
    row1 = -(logits[1, 1] - torch.logsumexp(logits[1, [1, 2]], 0))
    row2 = -(logits[2, 2] - torch.logsumexp(logits[2], 0))
    assert torch.allclose(loss, (row0 + row1 + row2) / 3)


def test_multi_interest_tower_gives_one_unit_vector_per_head_and_scores_by_the_best():
    cfg = replace(ATTN, multi_interest=True)
    m = TwoTower(cfg).eval()
    hist, cats, length, feats = user_batch()
    u = m.user_tower(hist, cats, length, feats)
    assert u.shape == (5, cfg.attn_heads, cfg.dim) and cfg.n_interests == cfg.attn_heads
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(5, cfg.attn_heads))
    assert not torch.allclose(u[3, 0], u[3, 1])  # the heads read the history differently
    v = m.item_tower(*item_batch())
    want = torch.stack([torch.stack([(u[b] @ v[n]).max() for n in range(len(v))]) for b in range(5)])
    torch.testing.assert_close(user_item_scores(u, v), want)
    torch.testing.assert_close(user_item_scores(u[:, 0], v), u[:, 0] @ v.T)  # one vector: the dot product
    with pytest.raises(ValueError, match="attn_heads"):
        replace(CFG, multi_interest=True)


def test_row_weights_give_a_weighted_mean_of_the_rows_cross_entropy():
    torch.manual_seed(1)
    u = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    ids, log_q = torch.arange(3), torch.zeros(3)
    per_row = [in_batch_softmax_loss(u, v, ids, log_q, 1.0, torch.eye(3)[i]) for i in range(3)]
    w = torch.tensor([1.0, 0.3, 0.3])
    expected = (w * torch.stack(per_row)).sum() / w.sum()
    assert torch.allclose(in_batch_softmax_loss(u, v, ids, log_q, 1.0, w), expected)
    # Equal weights are the unweighted mean.
    assert torch.allclose(
        in_batch_softmax_loss(u, v, ids, log_q, 1.0, torch.full((3,), 2.0)),
        in_batch_softmax_loss(u, v, ids, log_q, 1.0),
    )
    assert not torch.allclose(per_row[0], per_row[1])


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    m = TwoTower(CFG)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    hist, cats, length, feats = user_batch()
    ids, c, b, p = item_batch(5)
    losses = []
    for _ in range(30):
        u, v = m(hist, cats, length, feats, ids, c, b, p)
        loss = in_batch_softmax_loss(u, v, ids, torch.zeros(5), 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_price_buckets_are_equal_count():
    price = np.random.default_rng(0).lognormal(3, 1, 1000)
    edges = price_bucket_edges(price, 10)
    b = price_buckets(price, edges)
    assert edges.shape == (9,) and b.min() == 0 and b.max() == 9
    assert np.bincount(b).min() >= 90
    assert price_buckets(np.array([0.0, 1e9]), edges).tolist() == [0, 9]


@pytest.mark.parametrize("use_last", [True, False])
def test_no_user_features(use_last):
    cfg = TwoTowerConfig(n_items=10, n_categories=2, n_brands=2, max_hist=4, emb_dim=4, dim=6, use_last_item=use_last)
    m = TwoTower(cfg)
    u = m.user_tower(
        torch.ones(3, 4, dtype=torch.long),
        torch.ones(3, 4, dtype=torch.long),
        torch.tensor([0, 2, 4]),
        torch.zeros(3, 0, dtype=torch.long),
    )
    assert u.shape == (3, 6) and torch.isfinite(u).all()


def test_attention_reads_recency_and_survives_an_empty_history():
    torch.manual_seed(0)
    m = TwoTower(ATTN).eval()
    hist, cats, length, feats = user_batch()
    u = m.user_tower(hist, cats, length, feats)
    assert torch.isfinite(u).all()  # row 0 has hist_len 0: no NaN from a softmax over nothing
    # The same items in another order: mean pooling cannot tell, the recency embedding can.
    perm = torch.tensor([2, 0, 1, 3, 4, 5])
    assert not torch.allclose(u[3], m.user_tower(hist[:, perm], cats[:, perm], length, feats)[3])


def test_shared_tables_are_the_item_towers_and_survive_a_state_dict_round_trip():
    torch.manual_seed(0)
    m = TwoTower(ATTN)
    assert m.hist_item_emb.weight is m.item_emb.weight and m.hist_cat_emb.weight is m.cat_emb.weight
    assert len(list(m.parameters())) == len(list(TwoTower(replace(ATTN, share_item_emb=False)).parameters())) - 2
    torch.manual_seed(1)
    m2 = TwoTower(ATTN)
    m2.load_state_dict(m.state_dict())
    assert m2.hist_item_emb.weight is m2.item_emb.weight
    assert torch.allclose(m.eval().user_tower(*user_batch()), m2.eval().user_tower(*user_batch()))


def test_attention_user_tower_exports_with_the_same_onnx_signature(tmp_path):
    """The served graph keeps the spec's inputs and output (export_onnx checks them against the spec);
    ONNX Runtime matches PyTorch, empty histories included."""
    onnx = pytest.importorskip("onnx")
    from export.models import EXPORTERS
    from export.onnx_export import check_parity, export_onnx, ort_session
    from serving.contracts.model_specs import SPECS

    spec, exporter = SPECS["user_tower"], EXPORTERS["user_tower"]
    _, config = exporter.tiny()
    config = {**config, "attn_heads": 2, "share_item_emb": True}
    module = exporter.build(config)
    result = export_onnx(module, spec, config, tmp_path / "u.onnx")
    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == spec.input_names
    assert [o.name for o in graph.output] == spec.output_names
    check_parity(module, spec, config, result.path, batches=(1, 3))
    h = np.ones((2, config["max_hist"]), dtype=np.int64)
    feeds = {"hist_item_ids": h, "hist_cat_ids": h, "hist_len": np.array([0, 3], dtype=np.int64)}
    feeds["user_features"] = np.ones((2, len(config["user_feature_cardinalities"])), dtype=np.int64)
    got = ort_session(result.path).run(None, feeds)[0]
    want = module(*(torch.from_numpy(feeds[n]) for n in spec.input_names)).detach().numpy()
    assert np.isfinite(got).all() and np.allclose(got, want, atol=1e-5)
