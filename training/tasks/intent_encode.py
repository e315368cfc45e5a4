"""Tokenised intent data and how batches of it reach the model (shared by training/tasks/intent*.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from training.data.intents import tokenize
from training.data.schema import IntentDataset

EVAL_BATCH = 256


@dataclass
class Encoded:
    """Tokenised utterances: ids/mask int64 [N, max_len] (right-padded), label int64 [N]."""

    ids: np.ndarray
    mask: np.ndarray
    label: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)


def encode(ds: IntentDataset, tokenizer: Any) -> Encoded:
    ids, mask = tokenize(tokenizer, ds.texts)
    return Encoded(ids, mask, ds.label)


def to_device(enc: Encoded, rows: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = int(enc.lengths[rows].max())  # dynamic padding: trim to the longest row of this batch
    ids = torch.from_numpy(enc.ids[rows, :width]).to(device, non_blocking=True)
    mask = torch.from_numpy(enc.mask[rows, :width]).to(device, non_blocking=True)
    return ids, mask


def autocast(device: str) -> torch.autocast:
    # bf16 on GPU (no loss scaling needed); CPU stays in float32.
    return torch.autocast(
        device_type="cuda" if device.startswith("cuda") else "cpu",
        dtype=torch.bfloat16,
        enabled=device.startswith("cuda"),
    )
