"""The out-of-scope hand-off in the gateway: the shipped rule, its reasons, and agreement with training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving.intent.capability import check
from serving.intent.codec import IntentCodec, IntentMetadata, OodRule
from serving.runtime.backends.base import ModelInfo, TensorInfo
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g
from training.metrics.ood import Mahalanobis, energy_score, msp_score

H = 6


def _with_rule(root, rule: dict, stats: Mahalanobis | None = None):
    g.build_artifacts(root, manifest=False)
    meta = json.loads((root / "intent" / "intent.json").read_text())
    meta["ood"] = rule
    (root / "intent" / "intent.json").write_text(json.dumps(meta))
    if stats is not None:
        np.savez(root / "intent" / "ood.npz", means=stats.means, whitening=stats.whitening)
    return IntentCodec.load(root)


def _stats(rng: np.random.Generator) -> tuple[Mahalanobis, np.ndarray]:
    centres = rng.normal(size=(len(g.LABELS), H)) * 5.0
    label = rng.integers(0, len(g.LABELS), 400)
    return Mahalanobis.fit(centres[label] + rng.normal(size=(400, H)), label, len(g.LABELS)), centres


def test_scores_match_training_exactly(tmp_path):
    rng = np.random.default_rng(0)
    stats, _ = _stats(rng)
    codec = _with_rule(tmp_path, {"score": "mahalanobis", "threshold": 1.0, "statistics": "ood.npz"}, stats)
    emb, logits = rng.normal(size=(7, H)) * 3, rng.normal(size=(7, len(g.LABELS))) * 4
    probs = codec.probabilities({"logits": logits})
    outputs = {"logits": logits, "embedding": emb.astype(np.float32)}
    np.testing.assert_allclose(codec.ood_scores(outputs, probs), stats.score(emb.astype(np.float32)), rtol=1e-6)
    energy = OodRule("energy", 0.0)
    np.testing.assert_allclose(energy.scores(outputs, probs), energy_score(logits), rtol=1e-12)
    msp = OodRule("msp", 0.0)
    np.testing.assert_allclose(msp.scores(outputs, probs), msp_score(logits, codec.meta.temperature), atol=1e-12)


def test_reasons_out_of_scope_first_then_low_confidence_then_listed_intent(tmp_path):
    rng = np.random.default_rng(1)
    stats, centres = _stats(rng)
    codec = _with_rule(tmp_path, {"score": "mahalanobis", "threshold": 30.0, "statistics": "ood.npz"}, stats)
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.3, 0.2, 0.4, 0.1], [0.1, 0.8, 0.05, 0.05], [0.9, 0.05, 0.03, 0.02]])
    emb = np.stack([centres[0], centres[2], centres[1], centres[0] + 40.0])  # the last: far from every intent
    out = codec.decide(probs, codec.ood_scores({"embedding": emb}, probs))
    assert [o["handoff_reason"] for o in out] == [None, "low_confidence", "handoff_intent", "out_of_scope"]
    assert [o["handoff"] for o in out] == [False, True, True, True]
    # without a rule (older artifacts) nothing is out of scope and the answers are as before
    g.build_artifacts(tmp_path / "old", manifest=False)
    old = IntentCodec.load(tmp_path / "old")
    assert old.ood_scores({}, probs) is None
    assert [o["handoff_reason"] for o in old.decide(probs)] == [None, "low_confidence", "handoff_intent", None]


def test_bad_rules_are_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match=r"ood\.score"):
        IntentMetadata.from_dict({"labels": ["a"], "ood": {"score": "vibes", "threshold": 1}})
    with pytest.raises(ValueError, match="finite"):
        IntentMetadata.from_dict({"labels": ["a"], "ood": {"score": "energy"}})
    with pytest.raises(ValueError, match="statistics"):
        IntentMetadata.from_dict({"labels": ["a"], "ood": {"score": "mahalanobis", "threshold": 1}})
    wrong = Mahalanobis(np.zeros((2, H), np.float32), np.eye(H, dtype=np.float32))  # 2 means, 4 labels
    with pytest.raises(ValueError, match="do not fit 4 labels"):
        _with_rule(tmp_path, {"score": "mahalanobis", "threshold": 1.0, "statistics": "ood.npz"}, wrong)
    codec = _with_rule(tmp_path, {"score": "energy", "threshold": 1.0})
    with pytest.raises(ValueError, match="needs the model output 'logits'"):
        codec.ood_scores({"probs": np.full((1, 4), 0.25)}, np.full((1, 4), 0.25))


def test_readiness_check_names_a_missing_embedding_output(tmp_path):
    rng = np.random.default_rng(2)
    stats, _ = _stats(rng)
    codec = _with_rule(tmp_path, {"score": "mahalanobis", "threshold": 1.0, "statistics": "ood.npz"}, stats)
    probs = TensorInfo("probs", "float32", (len(g.LABELS),))

    def model(*outputs: TensorInfo) -> dict[str, ModelInfo]:
        return {"intent_bert": ModelInfo("intent_bert", 1, (), outputs, 8)}

    settings = Settings(intent_model="intent_bert")
    assert "needs the intent model output 'embedding'" in check({"intent": codec}, model(probs), settings)[0]
    assert check({"intent": codec}, model(probs, TensorInfo("embedding", "float32", (H,))), settings) == []
    issues = check({"intent": codec}, model(probs, TensorInfo("embedding", "float32", (H + 1,))), settings)
    assert "embedding has 7 dims" in issues[0]
