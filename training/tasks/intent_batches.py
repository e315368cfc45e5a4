"""How the intent fine-tuning batches its rows, and the contrastive objective that needs its own batching.

`length_bucketed_batches` is the default (little padding, random order); `class_grouped_batches` keeps rows of
one intent together so that `supcon_loss` (supervised contrastive, off by default) has positives in a batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, chunk: int) -> list:
    """Index batches [<=batch_size] in random order; within chunks of `chunk` batches rows are sorted by
    length, so a batch pads to about its own length instead of the longest utterance in the data."""
    n = lengths.shape[0]
    perm = rng.permutation(n)
    chunk_id = np.arange(n) // (batch_size * chunk)
    order = perm[np.lexsort((lengths[perm], chunk_id))]  # sort by chunk, then length, ties stay shuffled
    batches = np.array_split(order, np.arange(batch_size, n, batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def class_grouped_batches(
    lengths: np.ndarray, label: np.ndarray, batch_size: int, group: int, rng: np.random.Generator, chunk: int
) -> list[np.ndarray]:
    """Index batches of about batch_size // group groups of `group` rows of one class each (every row once):
    within a class, rows of similar length (jittered each epoch) form a group; groups are then length-bucketed
    like rows in `length_bucketed_batches`. A batch holds ~batch_size rows, each with same-class partners."""
    if not 1 <= group <= batch_size:
        raise ValueError(f"group {group} must be in 1..batch_size ({batch_size})")
    groups: list[np.ndarray] = []
    for c in np.unique(label):
        rows = np.flatnonzero(label == c)
        rows = rows[np.argsort(lengths[rows] + rng.uniform(0.0, 4.0, rows.shape[0]), kind="stable")]
        groups.extend(np.array_split(rows, np.arange(group, rows.shape[0], group)))
    group_len = np.array([lengths[g].max() for g in groups])
    per_batch = max(1, batch_size // group)
    return [np.concatenate([groups[i] for i in b]) for b in length_bucketed_batches(group_len, per_batch, rng, chunk)]


def supcon_loss(embedding: torch.Tensor, label: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) on embedding float [B, H], label int64 [B]:
    mean over anchors with a positive of -mean log p(positive | anchor) under softmax(cos / temperature)
    over the other rows of the batch. 0 when no row has a same-class partner."""
    z = F.normalize(embedding.float(), dim=1)
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (label[:, None] == label[None, :]) & ~eye
    n_pos = pos.sum(1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        return z.sum() * 0.0  # keeps the graph (and the device) of the batch
    mean_log_pos = log_prob.masked_fill(~pos, 0.0).sum(1)[anchors] / n_pos[anchors]
    return -mean_log_pos.mean()
