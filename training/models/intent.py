"""BERT intent classifier: a BERT encoder, masked pooling and a linear head over the intents.

In:  input_ids int64 [B, T] (WordPiece ids, right-padded with 0), attention_mask int64 [B, T] (1 = token).
Out: logits float32 [B, n_labels] (uncalibrated; divide by the checkpoint's temperature before softmax).

B and T are free (ONNX dynamic axes). Padded positions never change the logits: they are masked out of
attention as keys and out of the pooling. The model is rebuilt from `IntentConfig` alone (no pretrained
files needed), so export reads config + state_dict from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, BertModel
from transformers.utils import logging as hf_logging

from training.checkpoint import config_from_dict

POOLINGS = ("mean", "cls")
# BertConfig fields that IntentConfig mirrors; everything else in a pretrained config.json is irrelevant here.
_BERT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
)


@dataclass
class IntentConfig:
    """Constructor arguments of BertIntentModel (stored in the checkpoint). Defaults = MiniLM-L6-H384."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    n_labels: int = 77
    pooling: str = "mean"  # the packaged encoder was trained for mean pooling (sentence-transformers)
    dropout: float = 0.1  # on the pooled vector, before the head
    max_len: int = 128  # tokens incl. [CLS]/[SEP]; the tokenizer truncates to this

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not '{self.pooling}'")
        if self.max_len > self.max_position_embeddings:
            raise ValueError(f"max_len {self.max_len} exceeds max_position_embeddings {self.max_position_embeddings}")

    def bert_config(self) -> BertConfig:
        # sdpa: fused attention kernels on CPU and GPU; it exports to ONNX as plain MatMul/Softmax.
        cfg = BertConfig(**{k: getattr(self, k) for k in _BERT_FIELDS})
        cfg._attn_implementation = "sdpa"
        return cfg

    @classmethod
    def from_pretrained_dir(cls, directory: str | Path, **overrides: Any) -> IntentConfig:
        """Encoder fields from a pretrained folder's config.json, the rest from `overrides`."""
        bert = BertConfig.from_pretrained(str(directory), local_files_only=True)
        fields = {k: getattr(bert, k) for k in _BERT_FIELDS}
        return cls(**{**fields, **overrides})


class BertIntentModel(nn.Module):
    """The classifier of the module doc as a torch module: encoder, pooling, head (the checkpoint's weights)."""

    def __init__(self, config: IntentConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config.bert_config(), add_pooling_layer=False)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.n_labels)
        self._mean_pool = config.pooling == "mean"  # fixed at construction: no branching on data

    @classmethod
    def from_pretrained_encoder(cls, config: IntentConfig, directory: str | Path) -> BertIntentModel:
        """A classifier whose encoder holds the pretrained weights in `directory` (head freshly initialised)."""
        model = cls(config)
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # our own bars report progress; theirs would interleave
        try:
            # Loaded with its pooler (as saved) so transformers reports no unexpected keys; we drop it.
            pretrained = BertModel.from_pretrained(str(directory), local_files_only=True, attn_implementation="sdpa")
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        weights = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("pooler.")}
        missing, unexpected = model.bert.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{directory}: encoder weights do not match the config (missing {missing}, extra {unexpected})"
            )
        return model

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """-> pooled sentence vector float [B, hidden_size]."""
        mask = attention_mask.to(self.head.weight.dtype)
        # A ready 4-D additive mask is passed through untouched by transformers, so the graph is the same
        # whether or not a batch has padding (no data-dependent shortcut baked in at export time).
        additive = (1.0 - mask)[:, None, None, :] * torch.finfo(mask.dtype).min
        hidden = self.bert(
            input_ids=input_ids, attention_mask=additive, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state  # [B, T, H]
        if self._mean_pool:
            summed = (hidden * mask[:, :, None]).sum(dim=1)
            return summed / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return hidden[:, 0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids int64 [B, T], attention_mask int64 [B, T] -> logits [B, n_labels]."""
        return self.head(self.dropout(self.encode(input_ids, attention_mask)))


def build_from_checkpoint(payload: dict[str, Any]) -> BertIntentModel:
    """Rebuild the trained classifier from `training.checkpoint.load_checkpoint(...)` output (no pretrained files)."""
    model = BertIntentModel(config_from_dict(IntentConfig, payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval()
