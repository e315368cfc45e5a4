"""Per-model export wrappers: rebuild a model from its checkpoint and present the spec's signature.

Each `ModelExporter` ties a registered spec to: the checkpoint it comes from, a builder that turns a
checkpoint config (+ state dict) into an nn.Module taking the spec's inputs in order and returning its
outputs in order, and a tiny config for the parity tests (tests fail for a spec without an exporter).
Imports training.models (model classes and configs) only, never a training loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from serving.contracts.model_specs import SPECS, ModelSpec
from training.checkpoint import config_from_dict


@dataclass(frozen=True)
class ModelExporter:
    spec_name: str
    config_cls: type
    # (config dataclass, model with weights loaded, checkpoint extra) -> module with the spec's signature
    wrap: Callable[[Any, nn.Module, Mapping[str, Any]], nn.Module]
    model_cls: Callable[[Any], nn.Module]
    tiny_config: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        return SPECS[self.spec_name]

    def build(
        self,
        config: Mapping[str, Any],
        state_dict: Mapping[str, torch.Tensor] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> nn.Module:
        """Model from a checkpoint config (+ weights); random weights when state_dict is None (tests)."""
        cfg = config_from_dict(self.config_cls, dict(config))
        model = self.model_cls(cfg)
        if state_dict is not None:
            model.load_state_dict(state_dict)
        return self.wrap(cfg, model.eval(), extra or {}).eval()

    def from_checkpoint(self, payload: Mapping[str, Any]) -> nn.Module:
        return self.build(payload["config"], payload["state_dict"], payload.get("extra") or {})

    def tiny(self, seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
        """A tiny random model and its config dict (what a checkpoint would store), for fast tests."""
        torch.manual_seed(seed)
        cfg = config_from_dict(self.config_cls, self.tiny_config)
        config = dataclasses.asdict(cfg)
        model = self.model_cls(cfg)
        _randomise_buffers(model, seed)
        return self.wrap(cfg, model.eval(), {}).eval(), config


def _randomise_buffers(model: nn.Module, seed: int) -> None:
    """Give running statistics non-trivial values (fresh ones are 0/1 and would hide a wrong export)."""
    g = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():
        if buf.is_floating_point() and "running_mean" in name:
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.5)
        elif buf.is_floating_point() and "running_var" in name:
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)


EXPORTERS: dict[str, ModelExporter] = {}


def _register(exporter: ModelExporter) -> None:
    if exporter.spec_name not in SPECS:
        raise KeyError(f"exporter for unregistered spec {exporter.spec_name!r}")
    EXPORTERS[exporter.spec_name] = exporter


# ---------------------------------------------------------------------------------------------------------
# Two-tower


class UserTower(nn.Module):
    """(hist_item_ids, hist_cat_ids, hist_len, user_features) -> user_embedding [B, n_interests, dim].

    A single-vector model gets n_interests 1, so every exported tower has one signature."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, hist_item_ids: Tensor, hist_cat_ids: Tensor, hist_len: Tensor, user_features: Tensor) -> Tensor:
        return _interests(self.model.user_tower(hist_item_ids, hist_cat_ids, hist_len, user_features))


def _interests(u: Tensor) -> Tensor:
    return u if u.dim() == 3 else u.unsqueeze(1)


class UserTowerNoFeatures(UserTower):
    """A model trained without user features: the spec drops that input, the graph feeds an empty [B, 0]."""

    def forward(self, hist_item_ids: Tensor, hist_cat_ids: Tensor, hist_len: Tensor) -> Tensor:  # type: ignore[override]
        empty = hist_len.new_zeros((hist_len.shape[0], 0))
        return _interests(self.model.user_tower(hist_item_ids, hist_cat_ids, hist_len, empty))


class ItemTower(nn.Module):
    """(item_ids, cat_ids, brand_ids, price_bucket) -> item_embedding."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, item_ids: Tensor, cat_ids: Tensor, brand_ids: Tensor, price_bucket: Tensor) -> Tensor:
        return self.model.item_tower(item_ids, cat_ids, brand_ids, price_bucket)


# ---------------------------------------------------------------------------------------------------------
# DIN


class DINScorer(nn.Module):
    """DIN rows (history, candidate, user features) -> (logit, prob)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        hist_item_ids: Tensor,
        hist_cat_ids: Tensor,
        hist_len: Tensor,
        cand_item_ids: Tensor,
        cand_cat_ids: Tensor,
        user_features: Tensor,
    ) -> tuple[Tensor, Tensor]:
        logit = self.model(hist_item_ids, hist_cat_ids, hist_len, cand_item_ids, cand_cat_ids, user_features)
        return logit, torch.sigmoid(logit)


class DINScorerNoFeatures(DINScorer):
    """A DIN trained without user features: that input is dropped, the graph feeds an empty [B, 0]."""

    def forward(  # type: ignore[override]
        self, hist_item_ids: Tensor, hist_cat_ids: Tensor, hist_len: Tensor, cand_item_ids: Tensor, cand_cat_ids: Tensor
    ) -> tuple[Tensor, Tensor]:
        empty = hist_len.new_zeros((hist_len.shape[0], 0))
        return super().forward(hist_item_ids, hist_cat_ids, hist_len, cand_item_ids, cand_cat_ids, empty)


# ---------------------------------------------------------------------------------------------------------
# Intent


class IntentScorer(nn.Module):
    """(input_ids, attention_mask) -> (logits, probs); the calibration temperature is baked in."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(input_ids, attention_mask)
        return logits, torch.softmax(logits / self.temperature, dim=-1)


class Forecaster(nn.Module):
    """TCN (past_features, future_features, series_scale, store_ids, category_ids) -> (quantiles, mean)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        past_features: Tensor,
        future_features: Tensor,
        series_scale: Tensor,
        store_ids: Tensor,
        category_ids: Tensor,
    ) -> tuple[Tensor, Tensor]:
        return self.model(past_features, future_features, series_scale, store_ids, category_ids)


class PlanForecaster(Forecaster):
    """The TCN asked K plans per series: (past_features, future_plans [B, K, n_future, H], series_scale,
    store_ids, category_ids) -> (quantiles [B, K, H, n_q], mean [B, K, H]); the encoder runs once per series."""

    def forward(  # type: ignore[override]
        self,
        past_features: Tensor,
        future_plans: Tensor,
        series_scale: Tensor,
        store_ids: Tensor,
        category_ids: Tensor,
    ) -> tuple[Tensor, Tensor]:
        return self.model.forecast_plans(past_features, future_plans, series_scale, store_ids, category_ids)


def _register_all() -> None:
    from training.models.din import DINConfig, DINModel
    from training.models.intent import BertIntentModel, IntentConfig
    from training.models.tcn import TCNConfig, TCNForecaster
    from training.models.two_tower import TwoTower, TwoTowerConfig

    tiny_two_tower = {
        "n_items": 40,
        "n_categories": 6,
        "n_brands": 5,
        "user_feature_cardinalities": [3, 4],
        "n_price_buckets": 4,
        "max_hist": 12,
        "emb_dim": 4,
        "dim": 8,
        "hidden": [16],
    }
    _register(
        ModelExporter(
            "user_tower",
            TwoTowerConfig,
            lambda cfg, m, extra: UserTower(m) if cfg.user_feature_cardinalities else UserTowerNoFeatures(m),
            TwoTower,
            tiny_two_tower,
        )
    )
    _register(ModelExporter("item_tower", TwoTowerConfig, lambda cfg, m, extra: ItemTower(m), TwoTower, tiny_two_tower))
    _register(
        ModelExporter(
            "din",
            DINConfig,
            lambda cfg, m, extra: DINScorer(m) if cfg.user_feature_cardinalities else DINScorerNoFeatures(m),
            DINModel,
            {
                "n_items": 40,
                "n_categories": 6,
                "user_feature_cardinalities": [3],
                "max_hist": 12,
                "emb_dim": 4,
                "attention_hidden": [8, 4],
                "head_hidden": [8],
            },
        )
    )
    _register(
        ModelExporter(
            "intent_bert",
            IntentConfig,
            lambda cfg, m, extra: IntentScorer(m, float(extra.get("temperature", 1.0))),
            BertIntentModel,
            {
                "vocab_size": 64,
                "hidden_size": 16,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 32,
                "max_position_embeddings": 32,
                "n_labels": 5,
                "max_len": 24,
            },
        )
    )
    tiny_tcn = {
        "n_past": 6,
        "n_future": 4,
        "n_stores": 3,
        "n_categories": 4,
        "horizon": 5,
        "context_days": 16,
        "channels": 8,
        "dilations": [1, 2, 4],
        "emb_dim": 2,
        "decoder_context": 4,
        "decoder_hidden": 8,
        "price_elasticity": True,  # the trained profiles' price head, so parity covers it
    }
    _register(ModelExporter("tcn", TCNConfig, lambda cfg, m, extra: Forecaster(m), TCNForecaster, tiny_tcn))
    _register(ModelExporter("tcn_plans", TCNConfig, lambda cfg, m, extra: PlanForecaster(m), TCNForecaster, tiny_tcn))


_register_all()
