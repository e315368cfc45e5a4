"""Test metrics of the TCN on the last 28 days (split out of training/tasks/tcn.py, which re-exports them):
WRMSSE over the M5 hierarchy levels the panel has, MASE, P10-P90 coverage, wQL, against seasonal naive
and (on generated data) the oracle, plus the coverage of 7/14/28-day totals (training/forecast/)."""

from __future__ import annotations

import numpy as np

from serving.forecast.calibration import TotalsCalibration
from training.data.schema import SalesPanel
from training.forecast.calibration import lead_time_coverage
from training.metrics.forecast import interval_coverage, mase, seasonal_naive, weighted_quantile_loss, wrmsse
from training.report import format_table

HORIZON = 28


def hierarchy(panel: SalesPanel) -> dict[str, np.ndarray]:
    """The M5 aggregation levels this panel has: total, store, category, store x category, item, series."""
    n_cat = int(panel.category.max()) + 1
    return {
        "total": np.zeros(panel.n_series, dtype=np.int64),
        "store": panel.store.astype(np.int64),
        "category": panel.category.astype(np.int64),
        "store_category": panel.store.astype(np.int64) * n_cat + panel.category,
        "item": panel.item.astype(np.int64),
        "series": np.arange(panel.n_series),
    }


def evaluate(
    history: SalesPanel,
    test: SalesPanel,
    quantiles: np.ndarray,
    mean: np.ndarray,
    levels: tuple[float, ...],
    calibration: TotalsCalibration | None = None,
) -> dict:
    """Test metrics for the TCN, seasonal naive and (when known) the oracle. -> report dict with rows."""
    actual, hist = test.units, history.units
    lv = hierarchy(history)
    med = quantiles[..., levels.index(0.5)]
    naive = seasonal_naive(hist, HORIZON, m=7)

    def point(fc: np.ndarray) -> dict[str, float]:
        w = wrmsse(actual, fc, hist, history.price, lv)
        return {"wrmsse": w["wrmsse"], "mase": mase(actual, fc, hist, m=7), "levels": w}

    methods = {"seasonal naive (lag 7)": point(naive), "TCN": point(mean)}
    methods["TCN"]["mase"] = point(med)["mase"]  # MASE scores the median, the MAE-optimal point
    methods["TCN"]["wrmsse_p50"] = point(med)["wrmsse"]
    lo_i, hi_i = levels.index(min(levels)), levels.index(max(levels))
    methods["TCN"]["coverage_p10_p90"] = interval_coverage(actual, quantiles[..., lo_i], quantiles[..., hi_i])
    methods["TCN"]["wql"] = weighted_quantile_loss(actual, quantiles, levels)
    if test.expected is not None:
        methods["oracle (true expected demand)"] = point(np.nan_to_num(test.expected))
    base = methods["seasonal naive (lag 7)"]["wrmsse"]
    for m in methods.values():
        m["wrmsse_vs_naive"] = 1.0 - m["wrmsse"] / base
    return {
        "methods": methods,
        "lead_time_coverage": lead_time_coverage(actual, quantiles, levels, calibration, mean=mean),
    }


def results_table(report: dict) -> str:
    """Markdown table of the test metrics (the README's quality table)."""
    rows = [
        {
            "method": name,
            "WRMSSE": m["wrmsse"],
            "vs naive": f"{m['wrmsse_vs_naive']:+.1%}",
            "MASE": m["mase"],
            "P10-P90 coverage": f"{m['coverage_p10_p90']:.1%}" if "coverage_p10_p90" in m else "-",
            "wQL": f"{m['wql']:.3f}" if "wql" in m else "-",
        }
        for name, m in report["methods"].items()
    ]
    return format_table(rows, floatfmt="{:.3f}")
