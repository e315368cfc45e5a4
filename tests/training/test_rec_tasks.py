"""The two recommendation tasks end to end on the generator's tiny profile (one process, one epoch)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from export import features as export_features
from training.checkpoint import config_from_dict, load_checkpoint
from training.data import behavior
from training.data.fingerprints import behavior_fingerprint
from training.data.splits import leave_last_out
from training.models.din import DINConfig, DINModel
from training.models.two_tower import TwoTower, TwoTowerConfig
from training.tasks import din, two_tower
from training.tasks.base import TrainArgs
from training.tasks.rec_samples import impression_rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec")
    args = TrainArgs(profile="tiny", out_dir=out, device="cpu", max_epochs=1)
    return out, {"two_tower": two_tower.run(args), "din": din.run(args)}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "cfg_cls", "model_cls"), [("two_tower", TwoTowerConfig, TwoTower), ("din", DINConfig, DINModel)]
)
def test_checkpoint_rebuilds_the_model_and_records_the_run(runs, name, cfg_cls, model_cls):
    out, reports = runs
    path = out / "checkpoints" / f"{name}.pt"
    assert torch.load(path, weights_only=True)["model"] == name  # no pickled code needed to read it
    ck = load_checkpoint(path)
    model_cls(config_from_dict(cfg_cls, ck["config"])).load_state_dict(ck["state_dict"])
    assert ck["extra"]["profile"] == "tiny" and len(ck["data_fingerprint"]) == 16
    assert ck["metrics"] == pytest.approx(reports[name]["metrics"][name])
    body = json.loads((out / "reports" / f"{name}.json").read_text())
    assert body["profile"] == "tiny" and body["table"].startswith("| model |")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["two_tower", "din"])
def test_checkpoint_fingerprint_is_the_one_export_checks(runs, name):
    """What training stores is what export computes on the data it regenerates for the same profile and seed."""
    out, _ = runs
    stored = load_checkpoint(out / "checkpoints" / f"{name}.pt")["data_fingerprint"]
    log = export_features.behavior_for_export("tiny", 0, None)
    assert stored == behavior_fingerprint(log)
    export_features.check_fingerprint(log, stored, name)  # accepted
    other = export_features.behavior_for_export("tiny", 1, None)
    with pytest.raises(ValueError, match="trained on data with fingerprint"):
        export_features.check_fingerprint(other, stored, name)


@pytest.mark.slow
def test_reports_hold_the_baselines_and_the_oracle(runs):
    _, reports = runs
    tt = reports["two_tower"]["metrics"]
    assert set(tt) == {"two_tower", "popularity", "oracle"}
    assert set(tt["oracle"]) == {"recall@50", "recall@100", "recall@200", "ndcg@10"}
    for m in tt.values():
        assert 0.0 <= m["ndcg@10"] <= m["recall@50"] <= m["recall@100"] <= m["recall@200"] <= 1.0
    d = reports["din"]["metrics"]
    assert set(d) == {"din", "din_sum_pooling", "item_ctr", "oracle"}
    assert all(0.0 <= v["auc"] <= 1.0 and 0.0 <= v["gauc"] <= 1.0 for v in d.values())
    assert d["oracle"]["auc"] > 0.6  # the generator's clicks are predictable from what the rows hold


def test_din_predict_is_independent_of_row_order_and_chunking():
    log, _ = behavior.generate(behavior.PROFILES["tiny"], seed=1)
    train, _ = leave_last_out(log)
    rows = impression_rows(train, train, max_len=10)
    feats = din.Features(log.catalogue.category, log.user_features, log.n_users)
    torch.manual_seed(0)
    cat = log.catalogue
    model = DINModel(DINConfig(cat.n_items, cat.n_categories, tuple(log.user_feature_cardinalities), max_hist=10))
    full = din.predict(model, rows, feats, "cpu", chunk=len(rows))
    small = din.predict(model, rows, feats, "cpu", chunk=97)  # narrower chunks: histories trimmed per chunk
    assert np.allclose(full, small, atol=1e-5)
    perm = np.random.default_rng(0).permutation(len(rows))
    assert np.allclose(din.predict(model, rows.take(perm), feats, "cpu", chunk=97), full[perm], atol=1e-5)


def test_mba_penalty_counts_each_id_in_the_batch_once_weighted_by_its_rarity():
    torch.manual_seed(0)
    model = DINModel(DINConfig(n_items=6, n_categories=2, max_hist=3, emb_dim=2))
    hist = torch.tensor([[3, 3, 0], [5, 0, 0]])  # item 3 twice in the batch, 0 = padding
    hist_cat = torch.tensor([[1, 1, 0], [2, 0, 0]])
    inputs = (hist, hist_cat, torch.tensor([2, 1]), torch.tensor([5, 4]), torch.tensor([2, 1]), torch.zeros(2, 0))
    inv_items = torch.tensor([0.0, 1, 1, 0.5, 0.25, 0.1, 1])  # 1 / n_j by model id
    inv_cats = torch.tensor([0.0, 0.5, 0.2])
    w, c = model.item_emb.weight, model.cat_emb.weight
    want = (w[3].square().sum() * 0.5 + w[4].square().sum() * 0.25 + w[5].square().sum() * 0.1) + (
        c[1].square().sum() * 0.5 + c[2].square().sum() * 0.2
    )
    assert torch.allclose(din.mba_penalty(model, inputs, (inv_items, inv_cats)), want)


def test_id_counts_count_candidates_and_history_entries():
    log, _ = behavior.generate(behavior.PROFILES["tiny"], seed=2)
    rows = impression_rows(log, log, max_len=4)
    items, cats = din.id_counts(rows, log.catalogue.category, log.catalogue.n_items, chunk=50)
    hist, length = rows.histories()
    want = np.bincount(rows.item, minlength=log.catalogue.n_items) + np.bincount(
        hist[np.arange(4)[None, :] < length[:, None]], minlength=log.catalogue.n_items
    )
    assert items[0] == 0 and np.array_equal(items[1:], want)
    assert cats.sum() == want.sum() and cats[1 + log.catalogue.category[0]] >= want[0]


def test_two_tower_view_targets_add_a_seeded_share_of_views_beside_every_positive():
    log, _ = behavior.generate(behavior.PROFILES["tiny"], seed=2)
    base = two_tower.TRAIN_PROFILES["tiny"]
    plain = two_tower.training_pairs(log, base, seed=0)
    assert (plain.label == 1).all()
    tc = replace(base, view_targets=1.5)
    mixed = two_tower.training_pairs(log, tc, seed=0)
    pos, views = int((mixed.label == 1).sum()), int((mixed.label == 0).sum())
    assert views == round(1.5 * pos) and pos >= len(plain)
    assert np.all(np.diff(mixed.user.astype(np.int64)) >= 0)  # log order: users stay grouped
    again = two_tower.training_pairs(log, tc, seed=0)
    other = two_tower.training_pairs(log, tc, seed=1)
    assert np.array_equal(again.item, mixed.item) and not np.array_equal(other.item, mixed.item)
