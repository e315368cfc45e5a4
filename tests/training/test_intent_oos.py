"""Out-of-scope scores and the held-out-intents evaluation (tiny random encoder, toy data)."""

import json

import numpy as np
import pytest

from tests.training.test_intent_task import TINY_PROFILE, tiny_encoder, tiny_intent_args  # noqa: F401 (fixture)
from training.data.schema import IntentDataset
from training.metrics.ood import (
    Mahalanobis,
    auroc,
    energy_score,
    handed_off,
    handoff_tradeoff,
    msp_score,
    threshold_at_handoff,
)
from training.tasks.intent_oos import rescore, restrict, run_oos, split_classes


def test_auroc_matches_pairwise_counting_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(2, 7, 30).astype(float)
    pairs = (b[None, :] > a[:, None]).mean() + 0.5 * (b[None, :] == a[:, None]).mean()
    assert auroc(a, b) == pytest.approx(pairs)
    assert auroc(np.zeros(3), np.ones(3)) == 1.0 and auroc(np.ones(3), np.zeros(3)) == 0.0


def test_threshold_hands_off_at_most_the_rate():
    s = np.random.default_rng(1).normal(size=1000)
    for rate in (0.0, 0.05, 0.2):
        t = threshold_at_handoff(s, rate)
        assert rate - 0.002 <= handed_off(s, t) <= rate
    curve = handoff_tradeoff(s, s + 3.0)
    assert np.all(np.diff(curve["oos_recall"]) >= 0) and curve["in_scope_handoff"][0] == 0.0
    assert curve["oos_recall"][0] == pytest.approx(np.mean(s + 3.0 > s.max()))  # only what no in-scope reaches


def test_scores_rank_the_unfamiliar_higher():
    logits = np.array([[8.0, 0.0, 0.0], [0.5, 0.4, 0.3]])
    assert np.all(np.diff(msp_score(logits)) > 0) and np.all(np.diff(energy_score(logits)) > 0)
    assert energy_score(logits)[0] == pytest.approx(-np.log(np.exp(8.0) + 2.0))

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 4.0
    label = rng.integers(0, 3, 600)
    x = centres[label] + rng.normal(size=(600, 8))
    stats = Mahalanobis.fit(x, label, 3)
    near = centres[label[:50]] + rng.normal(size=(50, 8))
    far = rng.normal(size=(50, 8)) * 4.0 + 12.0
    assert auroc(stats.score(near), stats.score(far)) > 0.99
    # unit covariance: distances are (nearly) squared Euclidean to the class mean
    d = stats.distances(x[:5])
    assert d.argmin(1).tolist() == label[:5].tolist()


def test_held_out_classes_are_seeded_and_relabelled():
    keep, held = split_classes(8, 0.25, seed=3)
    assert len(held) == 2 and not set(keep) & set(held) and split_classes(8, 0.25, 3)[1].tolist() == held.tolist()
    ds = IntentDataset(texts=list("abcdefgh"), label=np.arange(8), labels=tuple("ABCDEFGH"), source="t", meta={})
    part = restrict(ds, keep)
    assert part.labels == tuple("ABCDEFGH"[c] for c in keep) and part.label.tolist() == list(range(6))
    with pytest.raises(ValueError):
        split_classes(3, 0.01, 0)


def test_oos_evaluation_end_to_end(tmp_path, tiny_encoder, monkeypatch):  # noqa: F811
    args = tiny_intent_args(tmp_path, monkeypatch, tmp_path / "art")

    report = run_oos(args, TINY_PROFILE, tiny_encoder, share=0.34, results=tmp_path / "results")

    assert report["data"]["in_scope_intents"] == 2 and report["data"]["test_out_of_scope"] == 10
    for name in ("msp", "energy", "mahalanobis"):
        fig = report["scores"][name]
        assert 0.0 <= fig["auroc"] <= 1.0 and fig["in_scope_handoff_at_test_threshold"] <= 0.05
    assert (tmp_path / "results" / "intent_oos_quick.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "results" / "intent_oos_quick.md").read_text()
    assert "Mahalanobis" in md and "AUROC" in md
    written = json.loads((args.out_dir / "reports" / "intent_oos_quick.json").read_text())
    assert written["best_score"] in ("msp", "energy", "mahalanobis", "knn")
    assert written["best_servable_score"] in ("msp", "energy", "mahalanobis")
    # scoring the saved outputs again (no training) gives the same figures
    again = rescore(args.out_dir, "quick", tmp_path / "results")
    for name in ("energy", "mahalanobis", "knn"):
        assert again["scores"][name] == pytest.approx(report["scores"][name])
    assert "rescored_with" in again


def test_served_rule_hands_off_five_percent_of_validation_and_carries_its_statistics():
    from training.tasks.intent_ood import Outputs, served_ood

    rng = np.random.default_rng(4)
    label = rng.integers(0, 3, 400)
    emb = rng.normal(size=(3, 8))[label] * 3 + rng.normal(size=(400, 8))
    logits = rng.normal(size=(400, 3)) * 2
    val = Outputs(logits.astype(np.float32), emb.astype(np.float32), label)
    energy = served_ood("energy", val, 1.0)
    assert energy["score"] == "energy" and handed_off(energy_score(logits), energy["threshold"]) == pytest.approx(0.05)
    stats = Mahalanobis.fit(emb, label, 3)
    maha = served_ood("mahalanobis", val, 1.0, stats)
    assert maha["means"].shape == (3, 8) and maha["whitening"].shape == (8, 8)  # tensors: weights_only-safe
    assert handed_off(stats.score(val.embedding), maha["threshold"]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="statistics"):
        served_ood("mahalanobis", val, 1.0)
