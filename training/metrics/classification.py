"""Classification metrics, calibration and the human hand-off trade-off. Pure numpy.

Shapes: logits/probs [N, C] float; y_true/y_pred [N] int in 0..C-1; confidence [N] in [0, 1].
"""

from __future__ import annotations

import numpy as np

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in y_true or y_pred (a class never
    seen and never predicted says nothing about the model). F1 of a class with no true positives is 0."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0:
        raise ValueError("macro-F1 of an empty set is undefined")
    n = n_labels if n_labels is not None else int(max(y_true.max(), y_pred.max())) + 1
    tp = np.bincount(y_true[y_true == y_pred], minlength=n).astype(np.float64)
    true_count = np.bincount(y_true, minlength=n)
    pred_count = np.bincount(y_pred, minlength=n)
    present = (true_count + pred_count) > 0
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (true_count + pred_count)
    f1 = 2.0 * tp[present] / (true_count[present] + pred_count[present])
    return float(f1.mean())


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true class under softmax(logits / temperature)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    m = z.max(axis=1, keepdims=True)
    log_norm = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(log_norm - z[np.arange(z.shape[0]), np.asarray(y_true)]))


def ece(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: confidence (max prob) in equal-width bins, sum over bins of
    (bin share) * |accuracy - mean confidence|."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    # Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 goes to bin 0.
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.abs(
        np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=conf, minlength=n_bins)
    )
    return float(gap.sum() / conf.shape[0])


def fit_temperature(
    logits: np.ndarray, y_true: np.ndarray, lo: float = 0.05, hi: float = 20.0, tol: float = 1e-4
) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) (Guo et al. 2017).

    The NLL is convex in 1/T (a log-sum-exp of terms linear in 1/T minus a linear term), hence unimodal,
    so a golden-section search over 1/T in [1/hi, 1/lo] finds the global minimum without gradients."""
    a, b = 1.0 / hi, 1.0 / lo
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = nll(logits, y_true, 1.0 / c), nll(logits, y_true, 1.0 / d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = nll(logits, y_true, 1.0 / c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = nll(logits, y_true, 1.0 / d)
    return float(2.0 / (a + b))


def handoff_curve(confidence: np.ndarray, correct: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Messages with confidence < threshold go to a human; the rest are answered automatically.

    -> {"threshold" [K], "handoff_share" [K] (share sent to a human), "automated_accuracy" [K] (accuracy
    on the messages kept; NaN when none is kept)}."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    order = np.argsort(confidence)
    conf_sorted = confidence[order]
    # correct_from[i] = number of correct answers among the messages at sorted positions >= i
    correct_from = np.concatenate([np.cumsum(correct[order][::-1])[::-1], [0.0]])
    handed = np.searchsorted(conf_sorted, thresholds, side="left")  # count with confidence < threshold
    kept = confidence.shape[0] - handed
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(kept > 0, correct_from[handed] / kept, np.nan)
    return {"threshold": thresholds, "handoff_share": handed / confidence.shape[0], "automated_accuracy": acc}


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, target_accuracy: float) -> float:
    """Lowest threshold (fewest hand-offs) whose automated accuracy reaches `target_accuracy`.

    Candidates are the observed confidences (every distinct cut of the data) plus 0 (hand nothing off).
    Returns +inf when not even the most confident message alone reaches the target (hand off everything)."""
    candidates = np.concatenate([[0.0], np.unique(np.asarray(confidence, dtype=np.float64))])
    curve = handoff_curve(confidence, correct, candidates)
    ok = np.flatnonzero(curve["automated_accuracy"] >= target_accuracy)
    return float(candidates[ok[0]]) if ok.size else float("inf")
