"""What every training task receives from the CLI, and the early-stopping rule they share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

# tiny: seconds-long smoke runs (two_tower, din, tcn; intent has none and says so); quick: minutes; full: the README.
PROFILES = ("tiny", "quick", "full")


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
    """Stop after `patience` evaluations without improving by `min_delta`; remembers the best state."""

    def __init__(self, patience: int = 3, mode: str = "max", min_delta: float = 1e-4):
        if mode not in ("max", "min"):
            raise ValueError("mode must be 'max' or 'min'")
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best = -math.inf if mode == "max" else math.inf
        self.bad = 0
        self.best_state: dict | None = None
        self.best_epoch = -1

    def step(self, value: float, state: dict | None = None, epoch: int = -1) -> bool:
        """Record `value`; return True when training should stop."""
        better = value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        if better:
            self.best, self.bad, self.best_epoch = value, 0, epoch
            if state is not None:
                self.best_state = {k: v.detach().clone() for k, v in state.items()}
        else:
            self.bad += 1
        return self.bad >= self.patience
