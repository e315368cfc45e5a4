"""Evaluation reports: artifacts/reports/<model>.json plus a table printed for people."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np


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
