"""Eager PyTorch models from artifacts/checkpoints, and the tables the naive peer reads.

Each model is rebuilt the way export does it (the checkpoint holds the constructor arguments), put in
eval mode and left as plain eager PyTorch: no TorchScript, no ONNX, no batching across requests.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.checkpoint import config_from_dict, load_checkpoint

log = logging.getLogger("bench.baseline")

CHECKPOINTS = {"two_tower": "two_tower.pt", "din": "din.pt", "intent": "intent.pt", "tcn": "tcn.pt"}


def _build(name: str, payload: dict[str, Any]) -> nn.Module:
    if name == "two_tower":
        from training.models.two_tower import TwoTower, TwoTowerConfig

        model: nn.Module = TwoTower(config_from_dict(TwoTowerConfig, payload["config"]))
    elif name == "din":
        from training.models.din import DINConfig, DINModel

        model = DINModel(config_from_dict(DINConfig, payload["config"]))
    elif name == "intent":
        from training.models.intent import BertIntentModel, IntentConfig

        model = BertIntentModel(config_from_dict(IntentConfig, payload["config"]))
    elif name == "tcn":
        from training.models.tcn import TCNConfig, TCNForecaster

        model = TCNForecaster(config_from_dict(TCNConfig, payload["config"]))
    else:
        raise KeyError(name)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


@dataclass
class EagerModels:
    """The models found under artifacts/checkpoints (a missing one leaves its endpoint unavailable)."""

    device: torch.device
    models: dict[str, nn.Module] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, artifacts: Path, device: str = "cpu") -> EagerModels:
        out = cls(torch.device(device))
        for name, file in CHECKPOINTS.items():
            path = artifacts / "checkpoints" / file
            if not path.is_file():
                out.problems[name] = f"{path} not found"
                continue
            payload = load_checkpoint(path)
            out.models[name] = _build(name, payload).to(out.device)
            out.configs[name] = dict(payload["config"])
            out.extras[name] = dict(payload.get("extra") or {})
        return out

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)


@dataclass
class Tables:
    """items.npz / users.npz as the naive peer uses them: Python dicts from shop id to row."""

    item_ids: np.ndarray
    item_row: dict[Any, int]
    category: np.ndarray
    brand: np.ndarray
    price_bucket: np.ndarray
    popularity: np.ndarray
    available: np.ndarray
    user_row: dict[Any, int]
    hist_offsets: np.ndarray
    hist_items: np.ndarray
    user_features: np.ndarray | None

    @classmethod
    def load(cls, artifacts: Path) -> Tables:
        with np.load(artifacts / "features" / "items.npz", allow_pickle=False) as z:
            items = {k: z[k] for k in z.files}
        with np.load(artifacts / "features" / "users.npz", allow_pickle=False) as z:
            users = {k: z[k] for k in z.files}
        n = len(items["item_ids"])
        zeros = np.zeros(n, dtype=np.int64)
        return cls(
            item_ids=items["item_ids"],
            item_row={v: i for i, v in enumerate(items["item_ids"].tolist())},
            category=items["category"].astype(np.int64),
            brand=items.get("brand", zeros).astype(np.int64),
            price_bucket=items.get("price_bucket", zeros).astype(np.int64),
            popularity=items.get("popularity", np.zeros(n)).astype(np.float64),
            available=items.get("available", np.ones(n, dtype=bool)).astype(bool),
            user_row={v: i for i, v in enumerate(users["user_ids"].tolist())},
            hist_offsets=users["hist_offsets"].astype(np.int64),
            hist_items=users["hist_items"].astype(np.int64),
            user_features=users["user_features"].astype(np.int64) if "user_features" in users else None,
        )

    def history(self, row: int) -> np.ndarray:
        return self.hist_items[self.hist_offsets[row] : self.hist_offsets[row + 1]]


@torch.inference_mode()
def item_vectors(models: EagerModels, tables: Tables, chunk: int = 16384) -> np.ndarray:
    """The item tower over the whole catalogue, once at start-up -> [n_items, dim] float32 (numpy)."""
    tower = models.models["two_tower"]
    n, parts = len(tables.item_ids), []
    for s in range(0, n, chunk):
        idx = np.arange(s, min(n, s + chunk))
        vec = tower.item_tower(  # type: ignore[operator]
            models.tensor(idx + 1),
            models.tensor(tables.category[idx] + 1),
            models.tensor(tables.brand[idx] + 1),
            models.tensor(tables.price_bucket[idx]),
        )
        parts.append(vec.float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def intent_metadata(artifacts: Path) -> dict[str, Any] | None:
    path = artifacts / "intent" / "intent.json"
    return json.loads(path.read_text()) if path.is_file() else None
