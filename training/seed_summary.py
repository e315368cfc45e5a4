"""Summarise training reports over seeds: `python -m training.seed_summary --model din DIR [DIR...]`.

Each DIR is a training `--out` folder (it holds reports/<model>.json, as `write_report` writes it) or a
report file itself. Every report's "metrics" is {system: {metric: value}} (din: din, din_sum_pooling,
item_ctr, oracle; two_tower: two_tower, popularity, oracle), so the same code serves every model. Prints
one markdown table: a row per compared system, a column per metric, each cell mean ± sd over the runs
(sample sd, ddof 1; n = the runs that report the system). `--versus SYSTEM` adds the paired differences
(each system minus SYSTEM, run by run), which is what "beats X over seeds" needs: the seeds move the
data and every system together, so the spread of the difference is smaller than the spreads of the two.
Top-level numeric fields of the reports (e.g. auc_gain_over_sum_pooling) get a table of their own.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


def report_path(path: Path, model: str) -> Path:
    """DIR/reports/<model>.json, or the path itself when it is a file."""
    return path if path.is_file() else path / "reports" / f"{model}.json"


def load_reports(paths: list[Path], model: str) -> list[dict[str, Any]]:
    reports = []
    for p in paths:
        rp = report_path(Path(p), model)
        if not rp.exists():
            raise FileNotFoundError(f"{rp}: no report (train with --out {p})")
        body = json.loads(rp.read_text())
        if not isinstance(body.get("metrics"), dict):
            raise ValueError(f"{rp}: no 'metrics' object (not a training report?)")
        reports.append(body)
    return reports


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for one value)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, sd


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return ""
    mean, sd = mean_sd(values)
    if all(float(v).is_integer() for v in values) and any(abs(v) >= 10 for v in values):
        digits = 0  # counts (rows, epochs): decimals would be noise
    return f"{mean:.{digits}f}" if math.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _ordered(keys: list[list[str]]) -> list[str]:
    """Union of key lists, first-seen order (the report's own order of systems and metrics)."""
    return list(dict.fromkeys(k for ks in keys for k in ks))


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def metrics_table(reports: list[dict[str, Any]], digits: int = 3, versus: str | None = None) -> str:
    """Markdown: system | n | metric... with mean ± sd cells; `versus` adds 'system − versus' paired rows."""
    systems = _ordered([list(r["metrics"]) for r in reports])
    metrics = _ordered(
        [[m for m, v in r["metrics"][s].items() if _is_number(v)] for r in reports for s in r["metrics"]]
    )
    rows = []
    for s in systems:
        runs = [r["metrics"][s] for r in reports if s in r["metrics"]]
        rows.append(
            [s, str(len(runs)), *(_cell([x[m] for x in runs if _is_number(x.get(m))], digits) for m in metrics)]
        )
    if versus is not None:
        if versus not in systems:
            raise ValueError(f"--versus {versus!r}: no such system (have: {', '.join(systems)})")
        for s in (s for s in systems if s != versus):
            pairs = [r["metrics"] for r in reports if s in r["metrics"] and versus in r["metrics"]]
            cells = []
            for m in metrics:
                diffs = [
                    p[s][m] - p[versus][m] for p in pairs if _is_number(p[s].get(m)) and _is_number(p[versus].get(m))
                ]
                cells.append(_cell(diffs, digits))
            rows.append([f"{s} − {versus}", str(len(pairs)), *cells])
    return _markdown(["system", "n", *metrics], rows)


def scalars_table(reports: list[dict[str, Any]], digits: int = 3) -> str | None:
    """Markdown of the reports' top-level numeric fields (mean ± sd), or None when there are none."""
    skip = {"world_size"}
    keys = _ordered([[k for k, v in r.items() if _is_number(v) and k not in skip] for r in reports])
    if not keys:
        return None
    rows = [
        [
            k,
            str(sum(_is_number(r.get(k)) for r in reports)),
            _cell([r[k] for r in reports if _is_number(r.get(k))], digits),
        ]
        for k in keys
    ]
    return _markdown(["field", "n", "mean ± sd"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.seed_summary", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="report name: din, two_tower, tcn, intent ...")
    ap.add_argument("dirs", nargs="+", type=Path, help="training --out folders (or report files), one per seed")
    ap.add_argument("--digits", type=int, default=3)
    ap.add_argument("--versus", default=None, help="also print each system minus this one, paired by run")
    ns = ap.parse_args(argv)
    try:
        reports = load_reports(ns.dirs, ns.model)
        print(metrics_table(reports, ns.digits, ns.versus))
    except (FileNotFoundError, ValueError) as e:
        print(f"seed_summary: {e}", file=sys.stderr)
        return 2
    scalars = scalars_table(reports, ns.digits)
    if scalars:
        print()
        print(scalars)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
