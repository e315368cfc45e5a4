"""Checkpoints that rebuild a model without the training loop.

A checkpoint holds only weights_only-safe content (tensors, str, int, float, bool, lists, dicts):
{"model": name, "config": asdict(config), "state_dict": ..., "metrics": ..., "data_fingerprint": ...,
 "extra": ...}. `torch.load(weights_only=True)` reads it, so loading never runs pickled code.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_VERSION = 1


def _plain(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into weights_only-safe python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def save_checkpoint(
    path: str | Path,
    *,
    model_name: str,
    config: Any,
    state_dict: dict[str, torch.Tensor],
    metrics: dict[str, Any] | None = None,
    data_fingerprint: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    payload = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "model": model_name,
        "config": _plain(cfg),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "metrics": _plain(metrics or {}),
        "data_fingerprint": data_fingerprint,
        "extra": _plain(extra or {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a checkpoint
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train it with `python -m training train ...`")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {payload.get('checkpoint_version')} is not supported")
    return payload


def config_from_dict(config_cls: type, stored: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from a checkpoint, turning lists back into tuples where declared."""
    kwargs = {}
    for f in dataclasses.fields(config_cls):
        if f.name in stored:
            v = stored[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) and "tuple" in str(f.type) else v
    return config_cls(**kwargs)
