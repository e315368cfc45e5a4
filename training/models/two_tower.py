"""Two-tower retrieval model (Yi et al. 2019, "Sampling-bias-corrected neural modeling").

Two separate forward functions on plain tensors, because export writes two ONNX graphs:

- `user_tower(hist_item_ids [B, L] int64, hist_cat_ids [B, L] int64, hist_len [B] int64,
  user_features [B, F] int64) -> [B, dim] float32`, served online.
  History = the user's most recent positive items, left-aligned, oldest first, ids already shifted by
  ID_OFFSET (0 = padding); positions >= hist_len are ignored (mask from arange comparison).
- `item_tower(item_ids [N] int64, cat_ids [N] int64, brand_ids [N] int64, price_bucket [N] int64)
  -> [N, dim] float32`, run offline over the catalogue into FAISS. Ids shifted by ID_OFFSET;
  price_bucket from `price_buckets(price, edges)` (0..n_price_buckets-1, no shift).

Both outputs are L2-normalised, so the dot product is a cosine. The training task adds the loss
(`in_batch_softmax_loss`, sampled softmax with the log-Q correction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TwoTowerConfig:
    n_items: int  # catalogue size; tables hold n_items + 1 rows (row 0 = padding / unknown)
    n_categories: int
    n_brands: int
    user_feature_cardinalities: tuple[int, ...] = ()
    n_price_buckets: int = 10
    max_hist: int = 50
    emb_dim: int = 32  # width of each id embedding
    dim: int = 64  # output embedding width (the FAISS index dimension)
    hidden: tuple[int, ...] = (128,)
    use_last_item: bool = True  # add the most recent item to the mean-pooled history (recency matters)
    dropout: float = 0.0
    # Attention pooling: `attn_heads` learned queries read the history (item ⊕ category ⊕ recency embedding),
    # each a masked softmax over positions; their pooled vectors join the mean (and last). 0 = mean (+ last) only.
    attn_heads: int = 0
    # The history reads the item tower's item/category tables instead of its own: a history item then gets the
    # embedding it learns as a target (each exported graph carries its own copy of the shared tables).
    share_item_emb: bool = False
    # Multi-interest user tower (needs attn_heads): one user vector per attention head, each from that head's
    # pooled history beside the mean, last item and user features through the shared MLP; an item scores the
    # max over the vectors (MIND, Li et al. 2019; ComiRec, Cen et al. 2020). The generator's clicks follow the
    # most similar of the recent positives, which one averaged vector cannot express.
    multi_interest: bool = False

    def __post_init__(self) -> None:
        if self.multi_interest and self.attn_heads < 1:
            raise ValueError("multi_interest needs attn_heads >= 1 (one user vector per head)")

    @property
    def n_interests(self) -> int:
        """User vectors per user: attn_heads with multi_interest, else 1."""
        return self.attn_heads if self.multi_interest else 1


def price_buckets(price: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Price [N] -> bucket index int64 [N] in 0..len(edges); edges are the training catalogue's quantiles."""
    return np.searchsorted(np.asarray(edges), np.asarray(price), side="right").astype(np.int64)


def price_bucket_edges(price: np.ndarray, n_buckets: int) -> np.ndarray:
    """Inner quantile edges [n_buckets - 1] of the catalogue's prices (equal-count buckets)."""
    qs = np.linspace(0.0, 1.0, n_buckets + 1)[1:-1]
    return np.quantile(np.asarray(price, dtype=np.float64), qs).astype(np.float32)


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class TwoTower(nn.Module):
    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.emb_dim
        # User side: its own item/category tables (the towers are exported as separate graphs).
        if not cfg.share_item_emb:
            self.hist_item_emb = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)
            self.hist_cat_emb = nn.Embedding(cfg.n_categories + 1, d, padding_idx=0)
        self.user_feat_emb = nn.ModuleList(
            nn.Embedding(c + 1, d, padding_idx=0) for c in cfg.user_feature_cardinalities
        )
        # Multi-interest: each vector reads one head's pooled history (plus mean and last), not all of them.
        n_hist = 2 * d * (1 + int(cfg.use_last_item) + (1 if cfg.multi_interest else cfg.attn_heads))
        if cfg.attn_heads:
            # Recency (0 = most recent) rather than absolute position: what drives the next click is how recent
            # a positive is, and histories are left-aligned with varying lengths.
            self.age_emb = nn.Embedding(cfg.max_hist, 2 * d)
            self.attn_query = nn.Parameter(torch.randn(2 * d, cfg.attn_heads) * (2 * d) ** -0.5)
        user_in = n_hist + d * len(cfg.user_feature_cardinalities)
        self.user_mlp = _mlp([user_in, *cfg.hidden, cfg.dim], cfg.dropout)
        # Item side.
        self.item_emb = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)
        self.cat_emb = nn.Embedding(cfg.n_categories + 1, d, padding_idx=0)
        self.brand_emb = nn.Embedding(cfg.n_brands + 1, d, padding_idx=0)
        self.price_emb = nn.Embedding(cfg.n_price_buckets, d)
        self.item_mlp = _mlp([4 * d, *cfg.hidden, cfg.dim], cfg.dropout)
        if cfg.share_item_emb:
            self.hist_item_emb, self.hist_cat_emb = self.item_emb, self.cat_emb

    def user_tower(
        self,
        hist_item_ids: torch.Tensor,
        hist_cat_ids: torch.Tensor,
        hist_len: torch.Tensor,
        user_features: torch.Tensor,
    ) -> torch.Tensor:
        """[B, L], [B, L], [B], [B, F] -> L2-normalised user vectors [B, dim] ([B, n_interests, dim] with
        multi_interest; score items with `user_item_scores`)."""
        L = hist_item_ids.shape[1]
        mask = (torch.arange(L, device=hist_len.device)[None, :] < hist_len[:, None]).unsqueeze(-1).float()
        h = torch.cat([self.hist_item_emb(hist_item_ids), self.hist_cat_emb(hist_cat_ids)], dim=-1) * mask
        pooled = h.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # [B, 2d] mean over real positions
        parts = [pooled]
        heads = self._attention_pool(h, hist_len, mask) if self.cfg.attn_heads else None
        if heads is not None and not self.cfg.multi_interest:
            parts.append(heads)
        if self.cfg.use_last_item:
            last = (hist_len - 1).clamp(min=0)
            idx = last.view(-1, 1, 1).expand(-1, 1, h.shape[-1])
            parts.append(torch.gather(h, 1, idx).squeeze(1))  # zero when hist_len == 0 (masked above)
        for j, emb in enumerate(self.user_feat_emb):
            parts.append(emb(user_features[:, j]))
        shared = torch.cat(parts, dim=-1)
        if heads is None or not self.cfg.multi_interest:
            return F.normalize(self.user_mlp(shared), dim=-1)
        k = self.cfg.attn_heads
        per_head = heads.view(heads.shape[0], k, -1)  # [B, K, 2d]
        x = torch.cat([per_head, shared[:, None, :].expand(-1, k, -1)], dim=-1)
        return F.normalize(self.user_mlp(x), dim=-1)  # [B, K, dim]

    def _attention_pool(self, h: torch.Tensor, hist_len: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h [B, L, 2d] (zero at padding), mask [B, L, 1] -> [B, heads * 2d]; zero when hist_len == 0."""
        L = h.shape[1]
        age = (hist_len[:, None] - 1 - torch.arange(L, device=h.device)[None, :]).clamp(0, self.cfg.max_hist - 1)
        scores = (h + self.age_emb(age)) @ self.attn_query  # [B, L, heads]
        # A large finite fill instead of -inf: an empty history then gives uniform weights times a zero h,
        # not NaN (the served graph sees new users with hist_len 0).
        scores = scores.masked_fill(mask == 0, -1e9)
        w = torch.softmax(scores, dim=1) * mask  # [B, L, heads]
        return torch.einsum("blh,bld->bhd", w, h).flatten(1)

    def item_tower(
        self,
        item_ids: torch.Tensor,
        cat_ids: torch.Tensor,
        brand_ids: torch.Tensor,
        price_bucket: torch.Tensor,
    ) -> torch.Tensor:
        """[N] x 4 -> L2-normalised item vectors [N, dim]."""
        x = torch.cat(
            [self.item_emb(item_ids), self.cat_emb(cat_ids), self.brand_emb(brand_ids), self.price_emb(price_bucket)],
            dim=-1,
        )
        return F.normalize(self.item_mlp(x), dim=-1)

    def forward(
        self,
        hist_item_ids: torch.Tensor,
        hist_cat_ids: torch.Tensor,
        hist_len: torch.Tensor,
        user_features: torch.Tensor,
        item_ids: torch.Tensor,
        cat_ids: torch.Tensor,
        brand_ids: torch.Tensor,
        price_bucket: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers in one call (one DDP forward per step): -> (user [B, dim], item [N, dim])."""
        u = self.user_tower(hist_item_ids, hist_cat_ids, hist_len, user_features)
        v = self.item_tower(item_ids, cat_ids, brand_ids, price_bucket)
        return u, v


def user_item_scores(user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
    """user [B, dim] or [B, K, dim] (multi-interest), item [N, dim] -> [B, N]: the dot product, or its max over
    the K user vectors (what the gateway's K FAISS searches, merged by best score, return)."""
    if user.dim() == 2:
        return user @ item.T
    return torch.einsum("bkd,nd->bkn", user, item).amax(dim=1)


def in_batch_softmax_loss(
    user: torch.Tensor,
    item: torch.Tensor,
    item_ids: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax over the batch's positives with the log-Q correction (Yi et al. 2019).

    user: [B, dim] or [B, K, dim], item: [B, dim] (row i of each is a positive pair); item_ids: [B]
    (duplicates are masked so an item is never its own negative); log_q: [B] log of each in-batch item's
    sampling probability.
    Popular items show up as negatives more often, so subtracting log q removes the popularity penalty
    that in-batch sampling would otherwise teach. weight: [B] optional per-row weight of the cross-entropy
    (a weighted mean). -> scalar mean cross-entropy.
    """
    logits = user_item_scores(user, item) / temperature - log_q[None, :]
    same = item_ids[:, None] == item_ids[None, :]
    eye = torch.eye(len(item_ids), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(len(item_ids), device=logits.device)
    if weight is None:
        return F.cross_entropy(logits, target)
    return (F.cross_entropy(logits, target, reduction="none") * weight).sum() / weight.sum().clamp_min(1e-12)
