"""Temporal convolutional network for quantile demand forecasting (Bai et al. 2018, "An Empirical
Evaluation of Generic Convolutional and Recurrent Networks for Sequence Modeling"), with an MQ-CNN-style
decoder for the horizon (Wen et al. 2017, "A Multi-Horizon Quantile Recurrent Forecaster").

forward(past_features   float32 [B, n_past, L],
        future_features float32 [B, n_future, H],
        series_scale    float32 [B],
        store_ids       int64   [B],      (index + 1; 0 = unknown)
        category_ids    int64   [B])
    -> quantiles float32 [B, H, n_quantiles]  (units/day, ordered along the last axis, >= 0)
       mean      float32 [B, H]               (units/day, > 0; the point forecast)

Feature layout and scaling live in serving/forecast/features.py (numpy, shared with serving).

Encoder: residual blocks of two causal dilated convolutions (left padding only, so position t sees
positions <= t), ReLU and dropout, with a 1x1 skip where the width changes; dilations double per block.
Weight normalisation from the paper is left out (a plainer exported graph; its effect was not measured).
Receptive field
= 1 + 2 * (kernel_size - 1) * sum(dilations): 511 days with kernel 2 and dilations 1..128, i.e. more
than a year of weekly pattern plus the weeks before it. Static inputs (store and category embeddings
and log(series_scale)) are broadcast over time into the encoder input and fed to the decoder.

Decoder, per forecast origin: a global layer turns [encoder state at the origin, static] into one
context vector per horizon day; a local MLP, shared by the days, reads [that context, the day's known
covariates, static] and emits the median m, n_quantiles - 1 gaps and the mean. Quantiles are monotone by
construction: lower = m - cumsum(softplus(.)), upper = m + cumsum(softplus(.)); forward clamps them
at 0 (a monotone map, so the order holds). Everything is in scaled units and multiplied back by
series_scale. A forecast for day h sees only covariates of day h and the past, never later days.

Price head (`price_elasticity`, on in the training profiles): every output of day h is multiplied by
exp(beta * log_price_ratio_h + gamma * promo_h), with beta = -softplus(.) <= 0 and gamma = softplus(.)
>= 0 read from [encoder state, static] per series, and the local MLP no longer sees those two channels:
a log-log demand curve with a promotion uplift, the generator's own form. Without it the MLP learned one
average response (about -1 on every category of the quick data, true ones -0.9 .. -2.5), too flat to
set prices with. The factor is positive, so the quantiles stay ordered.

`forecast_origins` is the training path: the same layers at the last K positions of a long window
(every position is a forecast origin, as in MQ-RNN's forking sequences), unclamped and scaled.
`forecast_plans` is the pricing path: K plans of the horizon for one past, the encoder run once (its state
ignores the future), each plan decoded as `forward` would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class TCNConfig:
    n_past: int  # channels of past_features (FeatureSpec.n_past)
    n_future: int  # channels of future_features (FeatureSpec.n_future)
    n_stores: int  # embedding rows = n + 1 (row 0 = unknown)
    n_categories: int
    horizon: int = 28
    context_days: int = 511  # length of past_features the model is served with (export spec)
    channels: int = 32
    kernel_size: int = 2
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    emb_dim: int = 4
    decoder_context: int = 16  # per-horizon-day context from the global layer
    decoder_hidden: int = 32
    dropout: float = 0.1
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    price_elasticity: bool = False  # the log-log price head (False: checkpoints written before it)
    price_channel: int = 0  # log_price_ratio and promo in future_features (serving/forecast/features.py)
    promo_channel: int = 1

    def __post_init__(self) -> None:
        q = self.quantiles
        if list(q) != sorted(q) or len(set(q)) != len(q) or 0.5 not in q or not all(0 < x < 1 for x in q):
            raise ValueError(f"quantiles must be increasing, in (0, 1) and include 0.5, got {q}")
        if self.kernel_size < 2 or not self.dilations:
            raise ValueError("kernel_size must be >= 2 and dilations non-empty")

    @property
    def receptive_field(self) -> int:
        """Days of past input one encoder output depends on (two convolutions per block)."""
        return 1 + 2 * (self.kernel_size - 1) * sum(self.dilations)

    @property
    def median_index(self) -> int:
        return list(self.quantiles).index(0.5)


class CausalConv1d(nn.Module):
    """Causal dilated convolution on [B, T, C] (time-major): output t = W [x(t - (k-1)d), ..., x(t - d), x(t)] + b.

    Written as shifted copies + one Linear rather than nn.Conv1d: the same function, but the CPU backward
    of a dilated Conv1d is many times slower than a GEMM, and this form exports to plain Pad/Slice/MatMul.
    Days before the window are zeros (left padding only, so output t never sees inputs after t).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int):
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.left_pad = (kernel_size - 1) * dilation
        self.linear = nn.Linear(kernel_size * c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        xp = F.pad(x, (0, 0, self.left_pad, 0))
        taps = [xp[:, j * self.dilation : j * self.dilation + t] for j in range(self.kernel_size)]
        return self.linear(torch.cat(taps, dim=-1))


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions with ReLU and dropout, plus a residual (Linear when widths differ).

    [B, T, c_in] -> [B, T, c_out]."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1 = CausalConv1d(c_in, c_out, kernel_size, dilation)
        self.conv2 = CausalConv1d(c_out, c_out, kernel_size, dilation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Linear(c_in, c_out) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(F.relu(self.conv1(x)))
        y = self.drop(F.relu(self.conv2(y)))
        return F.relu(y + self.skip(x))


class TCNForecaster(nn.Module):
    def __init__(self, cfg: TCNConfig):
        super().__init__()
        self.cfg = cfg
        self.store_emb = nn.Embedding(cfg.n_stores + 1, cfg.emb_dim)
        self.category_emb = nn.Embedding(cfg.n_categories + 1, cfg.emb_dim)
        n_static = 2 * cfg.emb_dim + 1  # + log(series_scale)
        widths = [cfg.n_past + n_static] + [cfg.channels] * len(cfg.dilations)
        self.encoder = nn.Sequential(
            *(
                TemporalBlock(widths[i], widths[i + 1], cfg.kernel_size, d, cfg.dropout)
                for i, d in enumerate(cfg.dilations)
            )
        )
        self.global_context = nn.Linear(cfg.channels + n_static, cfg.horizon * cfg.decoder_context)
        n_q = len(cfg.quantiles)
        self.local = nn.Sequential(
            nn.Linear(cfg.decoder_context + cfg.n_future + n_static, cfg.decoder_hidden),
            nn.ReLU(),
            nn.Linear(cfg.decoder_hidden, n_q + 1),  # n_q - 1 gaps, median, mean
        )
        # [beta, gamma] of the price head; the MLP's price and promo inputs are zeroed when it is on.
        self.elasticity = nn.Linear(cfg.channels + n_static, 2) if cfg.price_elasticity else None
        keep = torch.ones(cfg.n_future, 1)
        if cfg.price_elasticity:
            keep[[cfg.price_channel, cfg.promo_channel]] = 0.0
        self.register_buffer("future_keep", keep, persistent=False)

    def static(self, series_scale: torch.Tensor, store_ids: torch.Tensor, category_ids: torch.Tensor) -> torch.Tensor:
        """[B] x 3 -> [B, 2 * emb_dim + 1]."""
        log_scale = torch.log(series_scale.clamp(min=1e-3)).unsqueeze(-1)
        return torch.cat([self.store_emb(store_ids), self.category_emb(category_ids), log_scale], dim=-1)

    def encode(self, past: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """past [B, n_past, T], static [B, S] -> encoder states [B, T, channels] (causal in T)."""
        x = past.transpose(1, 2)
        stat = static.unsqueeze(1).expand(-1, x.shape[1], -1)
        return self.encoder(torch.cat([x, stat], dim=-1))

    def decode(
        self, state: torch.Tensor, static: torch.Tensor, future: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """state [N, channels], static [N, S], future [N, n_future, H] -> scaled, unclamped
        (quantiles [N, H, n_q], mean [N, H])."""
        cfg = self.cfg
        n, h = state.shape[0], cfg.horizon
        ctx = F.relu(self.global_context(torch.cat([state, static], dim=-1))).reshape(n, h, cfg.decoder_context)
        stat = static.unsqueeze(1).expand(-1, h, -1)
        raw = self.local(torch.cat([ctx, (future * self.future_keep).transpose(1, 2), stat], dim=-1))  # [N, H, n_q + 1]
        k = cfg.median_index
        n_q = len(cfg.quantiles)
        gaps = F.softplus(raw[..., : n_q - 1])  # [N, H, n_q - 1]: k gaps below the median, the rest above
        median = raw[..., n_q - 1 : n_q]
        low = gaps[..., :k]
        # Quantile i < k lies the suffix sum gaps[i:k] below the median (no flip: it exports everywhere).
        below = median - (low.sum(dim=-1, keepdim=True) - torch.cumsum(low, dim=-1) + low)
        above = median + torch.cumsum(gaps[..., k:], dim=-1)
        quantiles = torch.cat([below, median, above], dim=-1)
        mean = F.softplus(raw[..., n_q])
        if self.elasticity is not None:
            head = self.elasticity(torch.cat([state, static], dim=-1))  # [N, 2]
            beta, gamma = -F.softplus(head[:, :1]), F.softplus(head[:, 1:])
            factor = torch.exp(beta * future[:, cfg.price_channel] + gamma * future[:, cfg.promo_channel])  # [N, H]
            quantiles, mean = quantiles * factor.unsqueeze(-1), mean * factor
        return quantiles, mean

    def forecast_origins(
        self,
        past: torch.Tensor,
        future_windows: torch.Tensor,
        series_scale: torch.Tensor,
        store_ids: torch.Tensor,
        category_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training path. past [B, n_past, T]; future_windows [B, K, n_future, H]: the known days after
        each of the last K positions. -> scaled, unclamped (quantiles [B, K, H, n_q], mean [B, K, H])."""
        b, k = future_windows.shape[:2]
        static = self.static(series_scale, store_ids, category_ids)
        states = self.encode(past, static)[:, -k:]  # [B, K, channels]
        stat = static.unsqueeze(1).expand(-1, k, -1)
        q, mean = self.decode(states.reshape(b * k, -1), stat.reshape(b * k, -1), future_windows.flatten(0, 1))
        return q.reshape(b, k, *q.shape[1:]), mean.reshape(b, k, -1)

    def forecast_plans(
        self,
        past_features: torch.Tensor,
        future_plans: torch.Tensor,
        series_scale: torch.Tensor,
        store_ids: torch.Tensor,
        category_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Serving path of K plans per series: future_plans [B, K, n_future, H] -> (quantiles [B, K, H, n_q],
        mean [B, K, H]), plan k equal to `forward` with future_features = future_plans[:, k]. The encoder's last
        state does not see the future, so it runs once per series here, not once per plan."""
        b, k = future_plans.shape[:2]
        static = self.static(series_scale, store_ids, category_ids)
        state = self.encode(past_features, static)[:, -1]
        q, mean = self.decode(
            state.unsqueeze(1).expand(-1, k, -1).reshape(b * k, -1),
            static.unsqueeze(1).expand(-1, k, -1).reshape(b * k, -1),
            future_plans.flatten(0, 1),
        )
        scale = series_scale.reshape(-1, 1, 1)
        return F.relu(q.reshape(b, k, *q.shape[1:])) * scale.unsqueeze(-1), mean.reshape(b, k, -1) * scale

    def forward(
        self,
        past_features: torch.Tensor,
        future_features: torch.Tensor,
        series_scale: torch.Tensor,
        store_ids: torch.Tensor,
        category_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        static = self.static(series_scale, store_ids, category_ids)
        state = self.encode(past_features, static)[:, -1]
        q, mean = self.decode(state, static, future_features)
        scale = series_scale.reshape(-1, 1)
        return F.relu(q) * scale.unsqueeze(-1), mean * scale
