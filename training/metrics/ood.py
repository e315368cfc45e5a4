"""Out-of-scope (OOS) scores and how well they separate in-scope from out-of-scope messages. Pure numpy.

Every score is "higher = more likely out of scope", so one rule serves them all: hand off when
score > threshold. Shapes: logits [N, C], embeddings [N, H], scores [N].

- `msp_score`: 1 - max calibrated softmax probability (the low-confidence rule the gateway always had).
- `energy_score`: -T * logsumexp(logits / T) (Liu et al. 2020); uses the logit scale the softmax discards.
- `knn_score`: 1 - cosine similarity to the k-th nearest training embedding (Sun et al. 2022).
- `Mahalanobis`: the smallest Mahalanobis distance from the pooled embedding to a class mean, under one
  covariance shared by all classes (Lee et al. 2018; Podolskiy et al. 2021 for transformer intents).

The serving codec recomputes energy / Mahalanobis from the same shipped numbers (serving never imports
training); tests check that both sides agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def logsumexp(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def msp_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """1 - max softmax(logits / T): 0 for a certain answer, up to 1 - 1/C for a uniform one."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return 1.0 - np.exp(z.max(axis=1) - logsumexp(z))


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """-T * logsumexp(logits / T): low (very negative) where some class fits the message strongly."""
    return -temperature * logsumexp(np.asarray(logits, dtype=np.float64) / temperature)


def knn_score(embeddings: np.ndarray, reference: np.ndarray, k: int = 1, chunk: int = 1024) -> np.ndarray:
    """1 - cosine similarity to the k-th most similar row of `reference` [M, H] (chunked: [chunk, M] at a time)."""
    ref = np.asarray(reference, dtype=np.float64)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True).clip(1e-12)
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], chunk):
        sim = x[s : s + chunk] @ ref.T
        out[s : s + chunk] = 1.0 - np.partition(sim, -k, axis=1)[:, -k]
    return out


@dataclass(frozen=True)
class Mahalanobis:
    """Class means and the whitening of a shared covariance: d_c(x) = ||(x - mean_c) @ whitening||^2.

    means float32 [C, H]; whitening float32 [H, H] with whitening @ whitening.T = inverse covariance."""

    means: np.ndarray
    whitening: np.ndarray

    @classmethod
    def fit(cls, embeddings: np.ndarray, label: np.ndarray, n_classes: int, shrinkage: float = 0.01) -> Mahalanobis:
        """Means per class and the pooled within-class covariance, shrunk towards a scaled identity by
        `shrinkage` (keeps it invertible when the rows are few for H dimensions)."""
        x = np.asarray(embeddings, dtype=np.float64)
        label = np.asarray(label, dtype=np.int64)
        counts = np.bincount(label, minlength=n_classes).astype(np.float64)
        if np.any(counts == 0):
            raise ValueError(f"every class needs a row to fit its mean; missing: {np.flatnonzero(counts == 0)[:10]}")
        means = np.zeros((n_classes, x.shape[1]))
        np.add.at(means, label, x)
        means /= counts[:, None]
        centred = x - means[label]
        cov = centred.T @ centred / x.shape[0]
        h = cov.shape[0]
        cov = (1.0 - shrinkage) * cov + shrinkage * (np.trace(cov) / h) * np.eye(h)
        # inverse covariance = L L^T with L lower-triangular (Cholesky), so x @ L whitens
        whitening = np.linalg.cholesky(np.linalg.inv(cov))
        return cls(means.astype(np.float32), whitening.astype(np.float32))

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """-> squared distances to every class mean [N, C]."""
        w = self.whitening.astype(np.float64)
        z = np.asarray(embeddings, dtype=np.float64) @ w
        m = self.means.astype(np.float64) @ w
        d = (z * z).sum(1)[:, None] + (m * m).sum(1)[None, :] - 2.0 * z @ m.T
        return np.maximum(d, 0.0)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """-> distance to the nearest class mean [N] (the OOS score)."""
        return self.distances(embeddings).min(axis=1)


def auroc(in_scores: np.ndarray, oos_scores: np.ndarray) -> float:
    """P(score of a random OOS message > score of a random in-scope one), ties counted half
    (Mann-Whitney U over the pooled ranks)."""
    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(oos_scores, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("AUROC needs in-scope and out-of-scope scores")
    pooled = np.concatenate([a, b])
    order = np.argsort(pooled, kind="stable")
    sorted_vals = pooled[order]
    ranks = np.empty(pooled.size)
    ranks[order] = np.arange(1, pooled.size + 1, dtype=np.float64)
    # average ranks over ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, counts)
    u = ranks[a.size :].sum() - b.size * (b.size + 1) / 2.0
    return float(u / (a.size * b.size))


def threshold_at_handoff(in_scores: np.ndarray, rate: float) -> float:
    """Threshold t such that at most `rate` of the in-scope messages have score > t (are handed off),
    as close to `rate` as the data allows."""
    s = np.sort(np.asarray(in_scores, dtype=np.float64))[::-1]
    if s.size == 0:
        raise ValueError("no in-scope scores")
    k = int(np.floor(rate * s.size + 1e-9))
    return float(s[min(k, s.size - 1)])


def handed_off(scores: np.ndarray, threshold: float) -> float:
    """Share with score > threshold."""
    return float(np.mean(np.asarray(scores, dtype=np.float64) > threshold))


def handoff_tradeoff(in_scores: np.ndarray, oos_scores: np.ndarray, n_points: int = 201) -> dict[str, np.ndarray]:
    """The curve for the plot: in-scope hand-off rate [K] in 0..1 and the OOS recall reached there [K]."""
    rates = np.linspace(0.0, 1.0, n_points)
    oos = np.sort(np.asarray(oos_scores, dtype=np.float64))
    thresholds = np.array([threshold_at_handoff(in_scores, r) for r in rates])
    recall = 1.0 - np.searchsorted(oos, thresholds, side="right") / oos.size
    in_rate = np.array([handed_off(in_scores, t) for t in thresholds])
    return {"in_scope_handoff": in_rate, "oos_recall": recall}
