"""Small helpers every training task uses: seeding, progress bars, data fingerprints, device choice."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

T = TypeVar("T")


def set_seed(seed: int) -> None:
    """Seed python, numpy and (when installed) torch, so a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # data generation runs without torch
        return
    torch.manual_seed(seed)


def progress(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None, **kw: Any) -> tqdm:
    """A tqdm bar on stderr. Off when stderr is not a terminal (logs, CI), on non-main DDP ranks and when
    SHOPSERVE_NO_PROGRESS is set."""
    disable = (
        bool(os.environ.get("SHOPSERVE_NO_PROGRESS"))
        or int(os.environ.get("RANK", "0")) != 0
        or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    )
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, disable=disable, dynamic_ncols=True, **kw)


def fingerprint(*arrays: np.ndarray | bytes | str) -> str:
    """sha256 over array contents, dtypes and shapes: identifies the data a model was trained on.

    The hash only: which arrays make up each kind of data's fingerprint is `training.data.fingerprints`."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, str):
            h.update(a.encode())
        elif isinstance(a, bytes):
            h.update(a)
        else:
            arr = np.ascontiguousarray(a)
            h.update(f"{arr.dtype}{arr.shape}".encode())
            if arr.dtype == object:
                h.update("\x1f".join(map(str, arr.ravel())).encode())
            else:
                h.update(arr.tobytes())
    return h.hexdigest()[:16]


def torch_device(requested: str = "auto") -> str:
    """'cuda' when asked for or when auto and a GPU is present, else 'cpu'."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def epoch_speed(samples: int, t0: float) -> dict[str, float]:
    """An epoch's training pass as history fields (bench/gpu reads samples/s from them): the pass only,
    validation left out. The loops call loss.item() every step, so a GPU's queue is drained by now."""
    seconds = time.perf_counter() - t0
    return {"train_samples": int(samples), "train_seconds": round(seconds, 4)}
