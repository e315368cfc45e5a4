"""Customer-service intent: tokenise texts, read calibrated probabilities, decide the hand-off.

Artifacts (export, issue 5), under artifacts/intent/:
    tokenizer.json   the encoder's WordPiece tokenizer (`tokenizers` format); its sha256 is checked
                     against the one training recorded when the metadata carries it
    intent.json      {"labels": [...], "temperature": T, "threshold": t, "max_len": L,
                      "handoff_intents": [...] (optional), "tokenizer_sha256": "..." (optional)}

The model's `probs` output is already softmax(logits / T); when a model only has `logits`, the
same calibration is applied here. Hand-off to a human: calibrated confidence below the threshold
training chose for its automated-accuracy target, or a top intent listed as always handed off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from serving.runtime.manifest import sha256_file

TOKENIZER_FILE = "intent/tokenizer.json"
METADATA_FILE = "intent/intent.json"
TOP_N = 3


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class IntentMetadata:
    labels: tuple[str, ...]
    temperature: float = 1.0
    threshold: float = 0.0
    max_len: int = 128
    handoff_intents: frozenset[str] = field(default_factory=frozenset)
    tokenizer_sha256: str | None = None

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

    def decide(self, probs: np.ndarray) -> list[dict[str, Any]]:
        """[B, n_labels] calibrated probabilities -> per text: intent, confidence, top-3, handoff."""
        n = min(TOP_N, probs.shape[1])
        top = np.argsort(-probs, axis=1, kind="stable")[:, :n]
        top_p = np.take_along_axis(probs, top, axis=1)
        handoff = (top_p[:, 0] < self.threshold) | self._handoff[top[:, 0]]
        labels = self._labels[top]
        return [
            {
                "intent": labels[i, 0],
                "confidence": float(top_p[i, 0]),
                "top": [{"intent": labels[i, j], "probability": float(top_p[i, j])} for j in range(n)],
                "handoff": bool(handoff[i]),
            }
            for i in range(probs.shape[0])  # answer building: one dict per text (at most MAX_TEXTS)
        ]
