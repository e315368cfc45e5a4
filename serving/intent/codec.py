"""Customer-service intent: tokenise texts, read calibrated probabilities, decide the hand-off.

Artifacts (export, issue 5), under artifacts/intent/:
    tokenizer.json   the encoder's WordPiece tokenizer (`tokenizers` format); its sha256 is checked
                     against the one training recorded when the metadata carries it
    intent.json      {"labels": [...], "temperature": T, "threshold": t, "max_len": L,
                      "handoff_intents": [...] (optional), "tokenizer_sha256": "..." (optional),
                      "ood": {"score": "energy" | "mahalanobis" | "msp", "threshold": s,
                              "statistics": "ood.npz" (mahalanobis: means [C, H], whitening [H, H])} (optional)}

The model's `probs` output is already softmax(logits / T); when a model only has `logits`, the
same calibration is applied here. Hand-off to a human, with the reason in the answer:
- `out_of_scope`: the OOS score (higher = less like any trained intent) above the threshold training set
  at 5 % of the in-scope validation messages (training/tasks/intent_ood.py);
- `low_confidence`: calibrated confidence below the threshold chosen for the automated-accuracy target;
- `handoff_intent`: the top intent is listed as always handed off.
The scores are recomputed here exactly as training computes them (training/metrics/ood.py; a test
checks both sides agree), from the model's `logits` (energy) or pooled `embedding` (Mahalanobis).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from serving.runtime.manifest import sha256_file

TOKENIZER_FILE = "intent/tokenizer.json"
METADATA_FILE = "intent/intent.json"
TOP_N = 3
OOD_SCORES = ("msp", "energy", "mahalanobis")
# What each OOS score reads from the model's outputs.
OOD_INPUT = {"msp": "probs", "energy": "logits", "mahalanobis": "embedding"}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]


@dataclass(frozen=True)
class OodRule:
    """Out-of-scope hand-off: score > threshold. means float [C, H] and whitening [H, H] for Mahalanobis."""

    score: str
    threshold: float
    means: np.ndarray | None = None
    whitening: np.ndarray | None = None
    statistics: str | None = None  # the .npz under artifacts/intent/ holding means and whitening

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OodRule:
        score, threshold = str(d.get("score")), float(d.get("threshold", math.nan))
        if score not in OOD_SCORES:
            raise ValueError(f"ood.score must be one of {OOD_SCORES}, not '{score}'")
        if not math.isfinite(threshold):
            raise ValueError("ood.threshold must be a finite number")
        if score == "mahalanobis" and not d.get("statistics"):
            raise ValueError("ood.score 'mahalanobis' needs ood.statistics (the file with means and whitening)")
        return cls(score=score, threshold=threshold, statistics=d.get("statistics"))

    def with_statistics(self, path: Path, n_labels: int) -> OodRule:
        """The rule with its Mahalanobis means and whitening read from `path` (shapes checked)."""
        with np.load(path, allow_pickle=False) as f:
            means, whitening = np.asarray(f["means"], np.float64), np.asarray(f["whitening"], np.float64)
        if means.ndim != 2 or means.shape[0] != n_labels or whitening.shape != (means.shape[1],) * 2:
            raise ValueError(f"{path}: means {means.shape} / whitening {whitening.shape} do not fit {n_labels} labels")
        return OodRule(self.score, self.threshold, means, whitening, self.statistics)

    @property
    def needs(self) -> str:
        return OOD_INPUT[self.score]

    def scores(self, outputs: Mapping[str, np.ndarray], probs: np.ndarray) -> np.ndarray:
        """[B] OOS scores from the model outputs (probs: the calibrated probabilities already computed)."""
        if self.score == "msp":
            return 1.0 - probs.max(axis=-1)
        if self.needs not in outputs:
            raise ValueError(f"the OOS score '{self.score}' needs the model output '{self.needs}'")
        x = np.asarray(outputs[self.needs], dtype=np.float64)
        if self.score == "energy":
            return -_logsumexp(x)
        assert self.means is not None and self.whitening is not None  # with_statistics ran at load
        z, m = x @ self.whitening, self.means @ self.whitening
        d = (z * z).sum(-1)[:, None] + (m * m).sum(-1)[None, :] - 2.0 * z @ m.T
        return np.maximum(d, 0.0).min(axis=-1)


@dataclass(frozen=True)
class IntentMetadata:
    labels: tuple[str, ...]
    temperature: float = 1.0
    threshold: float = 0.0
    max_len: int = 128
    handoff_intents: frozenset[str] = field(default_factory=frozenset)
    tokenizer_sha256: str | None = None
    ood: OodRule | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntentMetadata:
        labels = tuple(str(x) for x in d["labels"])
        unknown = set(d.get("handoff_intents") or ()) - set(labels)
        if unknown:
            raise ValueError(f"handoff_intents not among the labels: {sorted(unknown)}")
        if float(d.get("temperature", 1.0)) <= 0:
            raise ValueError("temperature must be > 0")
        return cls(
            labels=labels,
            temperature=float(d.get("temperature", 1.0)),
            threshold=float(d.get("threshold", 0.0)),
            max_len=int(d.get("max_len", 128)),
            handoff_intents=frozenset(d.get("handoff_intents") or ()),
            tokenizer_sha256=d.get("tokenizer_sha256"),
            ood=OodRule.from_dict(d["ood"]) if d.get("ood") else None,
        )


class IntentCodec:
    """Texts -> model inputs, and model outputs -> answers. The model call itself goes through the backend."""

    def __init__(self, tokenizer: Tokenizer, meta: IntentMetadata, threshold: float | None = None):
        self.meta = meta
        self.threshold = meta.threshold if threshold is None else threshold
        self._tokenizer = tokenizer
        # Padding to the longest text of the call only; the batcher pads across calls the same way.
        self._tokenizer.enable_truncation(max_length=meta.max_len)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._labels = np.asarray(meta.labels, dtype=object)
        self._handoff = np.isin(self._labels, list(meta.handoff_intents))

    @classmethod
    def load(cls, artifacts: str | Path, threshold: float | None = None) -> IntentCodec:
        root = Path(artifacts)
        meta = IntentMetadata.from_dict(json.loads((root / METADATA_FILE).read_text()))
        tok_path = root / TOKENIZER_FILE
        if meta.tokenizer_sha256 and sha256_file(tok_path) != meta.tokenizer_sha256:
            raise ValueError(f"{tok_path} is not the tokenizer the intent model was trained with (sha256 differs)")
        if meta.ood is not None and meta.ood.statistics:
            ood = meta.ood.with_statistics(root / Path(METADATA_FILE).parent / meta.ood.statistics, len(meta.labels))
            meta = replace(meta, ood=ood)
        return cls(Tokenizer.from_file(str(tok_path)), meta, threshold)

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """-> input_ids, attention_mask int64 [len(texts), longest], right-padded with 0."""
        enc = self._tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.asarray([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64),
        }

    def probabilities(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        probs = outputs["probs"] if "probs" in outputs else softmax(outputs["logits"], self.meta.temperature)
        if probs.shape[-1] != len(self.meta.labels):
            raise ValueError(f"the model has {probs.shape[-1]} intents, the metadata {len(self.meta.labels)} labels")
        return np.asarray(probs, dtype=np.float64)

    def ood_scores(self, outputs: Mapping[str, np.ndarray], probs: np.ndarray) -> np.ndarray | None:
        """[B] out-of-scope scores under the shipped rule, or None when the artifacts carry no rule."""
        return None if self.meta.ood is None else self.meta.ood.scores(outputs, probs)

    def decide(self, probs: np.ndarray, ood_scores: np.ndarray | None = None) -> list[dict[str, Any]]:
        """[B, n_labels] calibrated probabilities (+ [B] OOS scores) -> per text: intent, confidence, top-3,
        handoff and its reason (out of scope first: then the top intent means nothing)."""
        n = min(TOP_N, probs.shape[1])
        top = np.argsort(-probs, axis=1, kind="stable")[:, :n]
        top_p = np.take_along_axis(probs, top, axis=1)
        low, listed = top_p[:, 0] < self.threshold, self._handoff[top[:, 0]]
        rule = self.meta.ood
        oos = np.zeros_like(low) if ood_scores is None or rule is None else ood_scores > rule.threshold
        reason = np.select([oos, low, listed], ["out_of_scope", "low_confidence", "handoff_intent"], "")
        handoff = reason != ""
        labels = self._labels[top]
        return [
            {
                "intent": labels[i, 0],
                "confidence": float(top_p[i, 0]),
                "top": [{"intent": labels[i, j], "probability": float(top_p[i, j])} for j in range(n)],
                "handoff": bool(handoff[i]),
                "handoff_reason": reason[i] or None,
            }
            for i in range(probs.shape[0])  # answer building: one dict per text (at most MAX_TEXTS)
        ]
