"""What every training task receives from the CLI, and the early-stopping rule they share."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# tiny: seconds-long smoke runs (two_tower, din, tcn; intent has none and says so); quick: minutes; full: the README.
PROFILE_NAMES = ("tiny", "quick", "full")


@dataclass
class TrainArgs:
    profile: str = "quick"
    data_dir: Path | None = None  # None: generate (or for intent: ../shared/data/banking77) with the profile's sizes
    out_dir: Path = Path("artifacts")
    seed: int = 0
    device: str = "auto"
    max_epochs: int | None = None  # override the profile (tests use 1)

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"


class EarlyStopping:
    """Stop after `patience` evaluations without improving by `min_delta`, and give back the best weights.

    Every task's loop: `if stopper.update(metric, model, epoch): break`, then `stopper.restore(model)`.
    `update` keeps a copy of the weights of the best evaluation so far (detached clones, so later
    optimiser steps cannot change it); `restore` loads that copy back into the model."""

    def __init__(self, patience: int = 3, mode: str = "max", min_delta: float = 1e-4):
        if mode not in ("max", "min"):
            raise ValueError("mode must be 'max' or 'min'")
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best = -math.inf if mode == "max" else math.inf
        self.bad = 0
        self.best_state: dict[str, Any] | None = None
        self.best_epoch = -1
        self.improved = False  # whether the latest `update` was a new best

    def update(self, value: float, model: Any, epoch: int = -1) -> bool:
        """Record `value` for `model`'s current weights (any object with `state_dict()`, e.g. an
        nn.Module); return True when training should stop."""
        better = value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        self.improved = better
        if better:
            self.best, self.bad, self.best_epoch = value, 0, epoch
            self.best_state = {k: _copy(v) for k, v in model.state_dict().items()}
        else:
            self.bad += 1
        return self.bad >= self.patience

    def restore(self, model: Any) -> bool:
        """Load the best weights back into `model`; False (model untouched) before any evaluation."""
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True


def _copy(value: Any) -> Any:
    return value.detach().clone() if hasattr(value, "detach") else copy.deepcopy(value)
