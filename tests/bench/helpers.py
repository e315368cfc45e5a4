"""Tiny eager checkpoints that fit tests/serving/gateway_helpers' artifacts (for the naive peer)."""

from __future__ import annotations

from pathlib import Path

from tests.serving import gateway_helpers as g


def write_tiny_checkpoints(artifacts: Path, seed: int = 0) -> Path:
    """two_tower, din and intent checkpoints with random weights: 40 items, 5 categories, 2 user features."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.models.din import DINConfig, DINModel
    from training.models.intent import BertIntentModel, IntentConfig
    from training.models.two_tower import TwoTower, TwoTowerConfig

    torch.manual_seed(seed)
    cards = (g.USER_CARD, g.USER_CARD)
    tt = TwoTowerConfig(g.N_ITEMS, g.N_CATS, 3, cards, n_price_buckets=2, max_hist=6, emb_dim=4, dim=8, hidden=(8,))
    din = DINConfig(g.N_ITEMS, g.N_CATS, cards[:1], max_hist=6, emb_dim=4, attention_hidden=(8,), head_hidden=(8,))
    intent = IntentConfig(
        vocab_size=len(g.VOCAB),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        n_labels=len(g.LABELS),
        max_len=g.MAX_TOKENS,
    )
    for name, cfg, model in (
        ("two_tower", tt, TwoTower(tt)),
        ("din", din, DINModel(din)),
        ("intent", intent, BertIntentModel(intent)),
    ):
        save_checkpoint(
            artifacts / "checkpoints" / f"{name}.pt", model_name=name, config=cfg, state_dict=model.state_dict()
        )
    return artifacts
