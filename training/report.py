"""Evaluation reports: artifacts/reports/<model>.json plus a table printed for people.

A report compares with a published figure only where that figure was measured on the same data set:
`published_anchor(dataset)` gives the anchor for a named public set, or None (a shop's own CSV, a
generated set), and the report says so instead of borrowing another set's number.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

# Published results on the exact data set and split we evaluate on, keyed by our data set name.
PUBLISHED_ANCHORS: dict[str, dict[str, Any]] = {
    "banking77": {
        "metric": "test accuracy",
        "value": 0.937,
        "model": "fine-tuned BERT-base",
        "source": "Casanueva et al. 2020, Efficient Intent Detection with Dual Sentence Encoders, Table 3",
    },
}


def published_anchor(dataset: str | None) -> dict[str, Any] | None:
    """The published figure for `dataset` (e.g. "banking77"), or None when no published figure fits it."""
    return PUBLISHED_ANCHORS.get((dataset or "").lower())


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def write_report(out_dir: str | Path, model: str, report: dict[str, Any]) -> Path:
    out = Path(out_dir) / "reports" / f"{model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "model": model,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        **_jsonable(report),
    }
    out.write_text(json.dumps(body, indent=2) + "\n")
    return out


def format_table(rows: list[dict[str, Any]], floatfmt: str = "{:.4f}") -> str:
    """Markdown table from a list of dicts with the same keys (usable in the README as it is)."""
    if not rows:
        return ""
    cols = list(rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return floatfmt.format(v)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
