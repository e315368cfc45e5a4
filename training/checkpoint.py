"""Checkpoints that rebuild a model without the training loop.

A checkpoint holds only weights_only-safe content (tensors, str, int, float, bool, lists, dicts):
{"model": name, "config": asdict(config), "state_dict": ..., "metrics": ..., "data_fingerprint": ...,
 "data_source": ..., "extra": ...}. `torch.load(weights_only=True)` reads it, so loading never runs pickled code.

`data_source` says where the training data came from (`data_source(...)` builds it): a folder the data
was read from, or the generator profile and seed, or a named public set; export reads it back
(`recorded_data_dir`) so it is not told `--data` / `--sales-data` again. Older checkpoints have none.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
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


def data_source(
    kind: str,
    *,
    path: str | Path | None = None,
    name: str | None = None,
    profile: str | None = None,
    seed: int | None = None,
    fingerprint: str = "",
) -> dict[str, Any]:
    """Where a model's training data came from. kind: "behavior" | "sales" | "intent"; `path` the folder it
    was read from (absolute, so export finds it from anywhere), else `name` of a public set (e.g.
    "banking77") or the generator `profile` and `seed`; `fingerprint` the training.data.fingerprints hash."""
    return {
        "kind": kind,
        "path": str(Path(path).resolve()) if path is not None else None,
        "name": name,
        "profile": profile,
        "seed": seed,
        "fingerprint": fingerprint,
    }


def training_source(
    kind: str, data_dir: str | Path | None, profile: str, seed: int, fingerprint: str
) -> dict[str, Any]:
    """A training run's data: the folder it read, else the generator's profile and seed."""
    generated = data_dir is None
    return data_source(
        kind,
        path=data_dir,
        profile=profile if generated else None,
        seed=seed if generated else None,
        fingerprint=fingerprint,
    )


def recorded_data_dir(payload: Mapping[str, Any], kind: str) -> Path | None:
    """The data folder a checkpoint was trained from (None: generated, a named set, or not recorded)."""
    source = payload.get("data_source") or {}
    if source.get("kind") != kind or not source.get("path"):
        return None
    return Path(source["path"])


def save_checkpoint(
    path: str | Path,
    *,
    model_name: str,
    config: Any,
    state_dict: dict[str, torch.Tensor],
    metrics: dict[str, Any] | None = None,
    data_fingerprint: str = "",
    data_source: Mapping[str, Any] | None = None,
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
        "data_source": _plain(dict(data_source or {})),
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
