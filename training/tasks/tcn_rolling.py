"""`python -m training forecast-rolling --data DIR [--months 4] [--profile quick]`: forecast-eval over several
test months, each with its own training run, so a coverage figure is not one month's luck.

Why: `forecast-eval` judges the calibrated totals on the last 28 days only. Where every series' demand moves
together from month to month (a real bike-sales panel sold 109-477 units per 4 weeks over one year), one
month's P10-P90 coverage swings with that month's level whatever the method; the mean over several test months
is what says whether the intervals keep their promise. Month k (0 = the latest) cuts the panel's last k*28 days,
then trains the TCN (same profile, same code as `train tcn`) and runs `forecast-eval` on the rest, so each
month's validation split, calibration and test lie right before its cut. Writes <out>/forecast_rolling_<name>.md
and a JSON report under <reports>/reports/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.forecast.calibration import COVERAGE_DAYS
from training.report import format_table, write_report
from training.tasks.base import TrainArgs
from training.tasks.tcn import HORIZON
from training.tasks.tcn_eval import GOAL_COVERAGE

SALES_CSV, ITEMS_CSV = "sales.csv", "items.csv"
KEYS = tuple(f"{d}d_calibrated" for d in COVERAGE_DAYS)


def cut(src: Path, dest: Path, days: int) -> pd.DataFrame:
    """A copy of the sales folder without its last `days` days; -> the sales rows kept."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != SALES_CSV and f.is_file():
            shutil.copy(f, dest / f.name)
    sales = pd.read_csv(src / SALES_CSV, dtype={"date": str})
    dates = pd.to_datetime(sales["date"])
    kept = sales[dates <= dates.max() - pd.Timedelta(days=days)]
    kept.to_csv(dest / SALES_CSV, index=False)
    return kept


def month(src: Path, k: int, profile: str, seed: int, work: Path) -> dict[str, Any]:
    from training.tasks import tcn
    from training.tasks.tcn_eval import main as forecast_eval

    folder = work / f"m{k}" / "data"
    sales = cut(src, folder, k * HORIZON)
    out = work / f"m{k}"
    t0 = time.perf_counter()
    tcn.run(TrainArgs(profile=profile, data_dir=folder, out_dir=out, seed=seed, device="cpu"))
    ckpt = out / "checkpoints" / "tcn.pt"
    forecast_eval(["--data", str(folder), "--checkpoint", str(ckpt), "--out", str(out), "--reports", str(out)])
    report = json.loads((out / "reports" / f"forecast_{folder.name}.json").read_text())
    served = next(r for name, r in report["backtest"].items() if name.startswith("TCN advice, calibrated"))
    dates = pd.to_datetime(sales["date"])
    last = dates.max()
    age = (last - dates).dt.days  # 0 on the last day

    def units(days: int) -> float:  # sold in the last `days` days
        return float(sales.loc[age < days, "units"].sum())

    return {
        "month": k,
        "test_days": f"{(last - pd.Timedelta(days=HORIZON - 1)).date()} .. {last.date()}",
        "test_units": units(HORIZON),
        "valid_units": units(2 * HORIZON) - units(HORIZON),
        **{key: report["lead_time_coverage"][key] for key in KEYS},
        "in_stock": served["in_stock_rate"],
        "avg_stock": served["avg_stock"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        {
            "test month": r["test_days"],
            "units in test / validation 28 days": f"{r['test_units']:.0f} / {r['valid_units']:.0f}",
            **{f"{d}-day totals": f"{r[f'{d}d_calibrated']:.1%}" for d in COVERAGE_DAYS},
            "served advice in stock": f"{r['in_stock']:.1%}",
        }
        for r in rows
    ]
    mean = {key: float(np.mean([r[key] for r in rows])) for key in (*KEYS, "in_stock")}
    sd = {key: float(np.std([r[key] for r in rows], ddof=1)) if len(rows) > 1 else 0.0 for key in KEYS}
    out.append(
        {
            "test month": f"**mean of {len(rows)}** (sd)",
            "units in test / validation 28 days": "",
            **{
                f"{d}-day totals": f"**{mean[f'{d}d_calibrated']:.1%}** ({sd[f'{d}d_calibrated']:.1%})"
                for d in COVERAGE_DAYS
            },
            "served advice in stock": f"{mean['in_stock']:.1%}",
        }
    )
    return format_table(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training forecast-rolling", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="sales folder (our schema)")
    ap.add_argument("--months", type=int, default=4)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("training/results"))
    ap.add_argument("--reports", type=Path, default=Path("artifacts"))
    ns = ap.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="forecast-rolling-") as tmp:
        rows = [month(ns.data, k, ns.profile, ns.seed, Path(tmp)) for k in range(ns.months)]
    mean = {key: float(np.mean([r[key] for r in rows])) for key in KEYS}
    met = all(GOAL_COVERAGE[0] <= mean[key] <= GOAL_COVERAGE[1] for key in KEYS)
    command = f"python -m training forecast-rolling --data {ns.data} --months {ns.months} --profile {ns.profile}"
    md = "\n".join(
        [
            f"# Calibrated demand totals over {ns.months} test months: {ns.data.name}",
            "",
            f"`{command}` ({time.perf_counter() - t0:.0f} s). Each month: the panel cut after it, the TCN trained on "
            f"the rest ({ns.profile} profile, seed {ns.seed}), its totals calibrated on the 28 days before the test "
            "month, then `forecast-eval`'s P10-P90 coverage of the calibrated 7/14/28-day totals (pooled over the "
            "decision days 0, 7, 14) and the served advice's in-stock rate.",
            "",
            table(rows),
            "",
            f"Goal 80 +/- 5 % for the mean coverage of each total: {'met' if met else 'not met'}.",
            "",
        ]
    )
    ns.out.mkdir(parents=True, exist_ok=True)
    (ns.out / f"forecast_rolling_{ns.data.name}.md").write_text(md)
    write_report(ns.reports, f"forecast_rolling_{ns.data.name}", {"command": command, "months": rows, "mean": mean})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
