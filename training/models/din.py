"""Deep Interest Network ranking model (Zhou et al. 2018, "Deep Interest Network for Click-Through Rate Prediction").

forward(hist_item_ids [B, L] int64, hist_cat_ids [B, L] int64, hist_len [B] int64,
        cand_item_ids [B] int64, cand_cat_ids [B] int64, user_features [B, F] int64) -> click logit [B] float32

History = the user's positive items (click/cart/buy) before the impression, left-aligned, oldest first,
ids shifted by ID_OFFSET (0 = padding). Positions >= hist_len are masked (arange comparison), so what
sits in the padding never changes a score. Each item is represented as [item embedding, category
embedding] (2 * emb_dim).

pooling="attention": the local activation unit scores every history item against the candidate from
[h, c, h - c, h * c] with a small MLP; the unnormalised weights (no softmax, as in the paper, so the
pooled vector keeps the intensity of the interest) pool the history. pooling="sum": every real history
item weighs 1, the paper's base model, from the same code. The head MLP reads [interest, c, interest * c,
user profile], the profile being one embedding per categorical user feature (value + 1; 0 = unknown;
F = 0 allowed, then user_features is [B, 0]), as the paper's "user profile features" group.
Activation: Dice (data-adaptive PReLU; batch statistics in training, running statistics in eval, so
the exported graph is plain arithmetic) or PReLU.

Addition to the paper, a config switch (off by default so older checkpoints rebuild as they were), inside
the model so the exported inputs and outputs stay the same:
- id_bias: a scalar per candidate item and per candidate category added to the logit (zero here; training
  starts them at the click rates, `training.tasks.din.init_biases`). The item CTR sort knows each item's
  click rate; through the MLP the model learns it only slowly, and a rare item's embedding is the first
  thing the regularisation shrinks. Both poolings get it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DINConfig:
    n_items: int  # embedding tables hold n_items + 1 rows (row 0 = padding / unknown)
    n_categories: int
    user_feature_cardinalities: tuple[int, ...] = ()
    max_hist: int = 50
    emb_dim: int = 16  # per id; an item is item ⊕ category = 2 * emb_dim
    attention_hidden: tuple[int, ...] = (64, 32)  # paper: 80, 40
    head_hidden: tuple[int, ...] = (128, 64)  # paper: 200, 80
    activation: str = "dice"  # "dice" | "prelu"
    pooling: str = "attention"  # "attention" | "sum" (the base model)
    dropout: float = 0.0
    id_bias: bool = False  # per-item and per-category logit biases (module doc)

    def __post_init__(self) -> None:
        if self.activation not in ("dice", "prelu"):
            raise ValueError(f"activation must be 'dice' or 'prelu', not {self.activation!r}")
        if self.pooling not in ("attention", "sum"):
            raise ValueError(f"pooling must be 'attention' or 'sum', not {self.pooling!r}")


class Dice(nn.Module):
    """Dice: p(x) * x + (1 - p(x)) * alpha * x, p = sigmoid of x standardised per channel.

    Training standardises with the statistics of the rows that `mask` marks real (padded history
    positions must not move them); eval uses running statistics. x: [..., dim]; mask: x.shape[:-1] or None.
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(dim))
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            flat = x.reshape(-1, x.shape[-1])
            if mask is None:
                mean, var = flat.mean(0), flat.var(0, unbiased=False)
            else:
                # Masked moments as matmuls: E[x^2] - E[x]^2 costs one pass instead of several (activations are
                # O(1), so the cancellation is harmless; the clamp keeps it from going negative).
                w = mask.reshape(1, -1).to(x.dtype)
                n = w.sum().clamp(min=1.0)
                mean = (w @ flat).squeeze(0) / n
                var = ((w @ flat.square()).squeeze(0) / n - mean.square()).clamp(min=0.0)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((x - mean) * torch.rsqrt(var + self.eps))
        return x * (self.alpha + p * (1.0 - self.alpha))  # = p x + (1 - p) alpha x, in fewer ops


class MLP(nn.Module):
    """Linear layers with Dice/PReLU between them; the last layer is linear. forward(x [..., in], mask)."""

    def __init__(self, sizes: list[int], activation: str, dropout: float = 0.0):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.acts = nn.ModuleList(Dice(s) if activation == "dice" else nn.PReLU(s) for s in sizes[1:-1])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.after_first(self.linears[0](x), mask)

    def after_first(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The rest of the MLP given the first linear layer's output z (callers may compute z more cheaply)."""
        for i, act in enumerate(self.acts):
            # PReLU wants channels on dim 1; apply it on a flattened view so [B, L, C] works too.
            z = act(z, mask) if isinstance(act, Dice) else act(z.reshape(-1, z.shape[-1])).reshape(z.shape)
            z = self.linears[i + 1](self.dropout(z))
        return z


class DINModel(nn.Module):
    """The ranking network of the module doc as a torch module (the checkpoint's weights)."""

    def __init__(self, cfg: DINConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.emb_dim
        self.item_emb = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)
        self.cat_emb = nn.Embedding(cfg.n_categories + 1, d, padding_idx=0)
        feats = cfg.user_feature_cardinalities
        self.user_feat_emb = nn.ModuleList(nn.Embedding(c + 1, d, padding_idx=0) for c in feats)
        # Only built when used: DDP refuses parameters that get no gradient.
        self.attention = MLP([8 * d, *cfg.attention_hidden, 1], cfg.activation) if cfg.pooling == "attention" else None
        self.head = MLP([6 * d + d * len(feats), *cfg.head_hidden, 1], cfg.activation, cfg.dropout)
        self.item_bias: nn.Embedding | None = None
        self.cat_bias: nn.Embedding | None = None
        if cfg.id_bias:
            self.item_bias = nn.Embedding(cfg.n_items + 1, 1, padding_idx=0)
            self.cat_bias = nn.Embedding(cfg.n_categories + 1, 1, padding_idx=0)
            nn.init.zeros_(self.item_bias.weight)  # start as the paper's model; the data moves them
            nn.init.zeros_(self.cat_bias.weight)

    def forward(
        self,
        hist_item_ids: torch.Tensor,
        hist_cat_ids: torch.Tensor,
        hist_len: torch.Tensor,
        cand_item_ids: torch.Tensor,
        cand_cat_ids: torch.Tensor,
        user_features: torch.Tensor,
    ) -> torch.Tensor:
        L = hist_item_ids.shape[1]
        mask = (torch.arange(L, device=hist_len.device)[None, :] < hist_len[:, None]).to(torch.float32)  # [B, L]
        h = torch.cat([self.item_emb(hist_item_ids), self.cat_emb(hist_cat_ids)], dim=-1)  # [B, L, 2d]
        c = torch.cat([self.item_emb(cand_item_ids), self.cat_emb(cand_cat_ids)], dim=-1)  # [B, 2d]
        # pooling is a config switch, fixed at export time, not a data branch
        weights = self.activation_weights(h, c, mask) * mask if self.cfg.pooling == "attention" else mask
        interest = (weights.unsqueeze(-1) * h).sum(dim=1)  # [B, 2d]
        profile = [emb(user_features[:, j]) for j, emb in enumerate(self.user_feat_emb)]
        logit = self.head(torch.cat([interest, c, interest * c, *profile], dim=-1)).squeeze(-1)
        if self.item_bias is not None:
            logit = logit + self.item_bias(cand_item_ids).squeeze(-1) + self.cat_bias(cand_cat_ids).squeeze(-1)
        return logit

    def activation_weights(self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Local activation unit = attention MLP on [h, c, h - c, h * c] -> unmasked weights [B, L].

        h: [B, L, 2d], c: [B, 2d]. The first layer is applied block by block:
        W [h, c, h - c, h * c] = (W_h + W_d) h + W_p (h * c) + (W_c - W_d) c, so the candidate's term is
        computed once per row instead of once per history position and nothing [B, L, 8d] is built.
        Same weights and the same function as `self.attention(cat(...))`, at about half the cost.
        """
        first = self.attention.linears[0]
        w_h, w_c, w_d, w_p = first.weight.split(h.shape[-1], dim=1)
        per_pos = torch.cat([h, h * c.unsqueeze(1)], dim=-1) @ torch.cat([w_h + w_d, w_p], dim=1).T  # [B, L, H]
        per_row = c @ (w_c - w_d).T + first.bias  # [B, H]
        return self.attention.after_first(per_pos + per_row.unsqueeze(1), mask).squeeze(-1)
