"""Plots of the intent reports: the hand-off trade-off (training/tasks/intent.py) and the out-of-scope
curve (training/tasks/intent_oos.py). matplotlib is imported only when a plot is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def save_handoff_plot(path: Path, curve: dict[str, np.ndarray], chosen: dict[str, float], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(100 * curve["handoff_share"], 100 * curve["automated_accuracy"], lw=2, label="test, calibrated")
    ax.scatter(
        [100 * chosen["handoff_share"]],
        [100 * chosen["automated_accuracy"]],
        color="C3",
        zorder=3,
        label=f"chosen threshold {chosen['threshold']:.2f}",
    )
    ax.set_xlabel("messages handed off to a human (%)")
    ax.set_ylabel("accuracy on automated answers (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_oos_plot(
    path: Path, curves: dict[str, dict[str, np.ndarray]], raw: dict[str, Any], title: str, labels: dict[str, str]
) -> Path:
    """In-scope hand-off rate vs OOS recall per score, today's confidence threshold as a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(100 * c["in_scope_handoff"], 100 * c["oos_recall"], lw=2, color=f"C{i}", label=labels[name])
    today = raw["trained_confidence_threshold"]
    ax.scatter([100 * today["in_scope_handoff"]], [100 * today["oos_recall"]], color="k", zorder=3,
               label="today's confidence threshold")  # fmt: skip
    ax.axvline(5.0, color="grey", ls="--", lw=1)  # the goal: >= 85 % OOS recall at <= 5 % in-scope hand-off
    ax.axhline(85.0, color="grey", ls=":", lw=1)
    ax.set_xlim(0, 30)
    ax.set_ylim(0, 100)
    ax.set_xlabel("in-scope messages handed off (%)")
    ax.set_ylabel("out-of-scope messages handed off (recall, %)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
