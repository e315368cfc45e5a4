"""Out-of-scope scores for the intent model: model outputs, fitting on the training split, thresholds.

Shared by the training task (training/tasks/intent.py: fits the served score and its threshold) and the
held-out-classes evaluation (training/tasks/intent_oos.py: measures every score).

The served rule: hand off when the OOS score exceeds the threshold at which `target_handoff` (5 %) of
the in-scope validation messages would be handed off. Validation is never used to fit the statistics
(class means / covariance come from the training split), so its scores are honest held-out scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from training.common import progress
from training.metrics.ood import Mahalanobis, energy_score, knn_score, msp_score, threshold_at_handoff
from training.models.intent import BertIntentModel
from training.tasks.intent_encode import EVAL_BATCH, Encoded, autocast, to_device

SCORES = ("msp", "energy", "mahalanobis")  # what the gateway can serve (serving/intent/codec.py)
EVAL_SCORES = (*SCORES, "knn")  # measured by the evaluation only (serving it would ship training embeddings)
# The score the gateway hands off on, chosen by `python -m training intent-oos` (README, intent quality):
# energy reached the highest OOS recall at 5 % in-scope hand-off of the three and needs no extra model output
# (Mahalanobis would need the pooled embedding as an ONNX output; the codec supports it for such a model).
SERVED_SCORE = "energy"
# Rows per intent for the Mahalanobis statistics, per profile: a capped sample keeps quick short.
FIT_ROWS_PER_CLASS: dict[str, int | None] = {"quick": 64, "full": None}
TARGET_HANDOFF = 0.05  # share of in-scope messages the OOS rule may hand off (measured on validation)


@dataclass
class Outputs:
    """Model outputs for a set of rows: logits float32 [N, C], pooled embedding float32 [N, H], label [N]."""

    logits: np.ndarray
    embedding: np.ndarray
    label: np.ndarray


@torch.inference_mode()
def predict_outputs(model: BertIntentModel, enc: Encoded, device: str, desc: str = "predict") -> Outputs:
    """Logits and the pooled embedding the head reads (eval mode: dropout off), in the original row order."""
    model.eval()
    order = np.argsort(enc.lengths, kind="stable")
    n = order.shape[0]
    logits = np.empty((n, model.config.n_labels), dtype=np.float32)
    emb = np.empty((n, model.config.hidden_size), dtype=np.float32)
    for start in progress(range(0, n, EVAL_BATCH), desc=desc, leave=False):
        rows = order[start : start + EVAL_BATCH]
        with autocast(device):
            pooled = model.encode(*to_device(enc, rows, device))
            out = model.head(pooled)
        emb[rows] = pooled.float().cpu().numpy()
        logits[rows] = out.float().cpu().numpy()
    return Outputs(logits, emb, enc.label)


def rows_per_class(label: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most `cap` random rows of every class (all rows when cap is None): enough
    for class means and a shared covariance, at a fraction of a pass over the whole training split."""
    if cap is None:
        return np.arange(label.shape[0])
    perm = np.random.default_rng(seed).permutation(label.shape[0])
    order = perm[np.argsort(label[perm], kind="stable")]
    counts = np.bincount(label)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(order.shape[0]) - starts[label[order]]
    return np.sort(order[rank < cap])


def subset_encoded(enc: Encoded, rows: np.ndarray) -> Encoded:
    return Encoded(enc.ids[rows], enc.mask[rows], enc.label[rows])


def scores(
    name: str,
    out: Outputs,
    temperature: float,
    mahalanobis: Mahalanobis | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """OOS score `name` of every row (higher = more out of scope); `reference`: training embeddings (knn)."""
    if name == "msp":
        return msp_score(out.logits, temperature)
    if name == "energy":
        return energy_score(out.logits)  # T = 1: the raw logit scale is what carries the signal
    if name == "mahalanobis":
        if mahalanobis is None:
            raise ValueError("the Mahalanobis score needs statistics fitted on the training split")
        return mahalanobis.score(out.embedding)
    if name == "knn" and reference is not None:
        return knn_score(out.embedding, reference, k=1)
    raise ValueError(f"unknown OOS score '{name}' (or its statistics missing); choose from {EVAL_SCORES}")


def served_ood(name: str, val: Outputs, temperature: float, mahalanobis: Mahalanobis | None = None) -> dict[str, Any]:
    """What the checkpoint (and export's intent.json) carries for the served OOS rule."""
    threshold = threshold_at_handoff(scores(name, val, temperature, mahalanobis), TARGET_HANDOFF)
    body: dict[str, Any] = {"score": name, "threshold": threshold, "target_in_scope_handoff": TARGET_HANDOFF}
    if name == "mahalanobis" and mahalanobis is not None:
        body["means"] = torch.from_numpy(mahalanobis.means)  # tensors: weights_only-safe, compact
        body["whitening"] = torch.from_numpy(mahalanobis.whitening)
    return body


def fit_served_rule(
    name: str,
    model: BertIntentModel,
    train: Encoded,
    val: Encoded,
    val_logits: np.ndarray,
    temperature: float,
    rows_cap: int | None,
    device: str,
    seed: int,
) -> tuple[dict[str, Any], Mahalanobis | None]:
    """The served OOS rule for a trained model: statistics from (a capped sample of) the training split,
    threshold from validation (`val_logits`: the best epoch's, so logit scores need no extra pass).
    -> (checkpoint entry, fitted Mahalanobis or None)."""
    if name != "mahalanobis":
        val_out = Outputs(val_logits, np.zeros((val_logits.shape[0], 0), np.float32), val.label)
        return served_ood(name, val_out, temperature), None
    fit_rows = rows_per_class(train.label, rows_cap, seed)
    fit_out = predict_outputs(model, subset_encoded(train, fit_rows), device, desc="OOS statistics")
    maha = Mahalanobis.fit(fit_out.embedding, fit_out.label, model.config.n_labels)
    val_out = predict_outputs(model, val, device, desc="OOS threshold")
    return served_ood(name, val_out, temperature, maha), maha


def ood_metrics(
    rule: dict[str, Any], test: Outputs, temperature: float, maha: Mahalanobis | None, conf_threshold: float
) -> dict[str, Any]:
    """What the served rules do to the (all in-scope) test split: hand-offs for being out of scope, in total."""
    oos = scores(rule["score"], test, temperature, maha) > rule["threshold"]
    low = msp_score(test.logits, temperature) > 1.0 - conf_threshold
    return {
        "ood_score": rule["score"],
        "ood_threshold": rule["threshold"],
        "test_ood_handoff_share": float(oos.mean()),
        "test_total_handoff_share": float((oos | low).mean()),
    }
