"""`python -m training forecast-eval --profile quick [--data DIR] [--checkpoint artifacts/checkpoints/tcn.pt]`

Does the stock advice keep its promise? With the trained TCN (its checkpoint carries the calibration of
period totals fitted on the validation split), over the 28 test days that neither training, early
stopping nor the calibration saw:

1. P10-P90 coverage of the 7-, 14- and 28-day demand totals from every decision origin they fit after
   (7 and 14 days: test days 0, 7, 14; 28 days: day 0), for the uncalibrated ways of combining daily
   quantiles and for the calibrated totals (goal 80 +/- 5 %);
2. a replenishment backtest (training/forecast/backtest.py): review period 7 days, lead time 7 days,
   target service level 95 %, decisions at test days 0, 7 and 14, each from a fresh forecast with the
   test sales up to that day; in-stock rate and average stock per method (goal: in stock >= 93 % with
   the least stock among the methods that reach it).

Writes <out>/forecast_<name>.md (tables) and <out>/forecast_<name>.png, and <reports>/reports/
forecast_<name>.json; <name> is the profile, or the data folder's name with --data. --recalibrate refits
the calibration on the checkpoint's own weights and validation split (as training does) and stores it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from serving.forecast.calibration import TotalsCalibration
from serving.forecast.features import FeatureSpec, panel_calendar
from training.checkpoint import config_from_dict, load_checkpoint
from training.data.fingerprints import sales_fingerprint
from training.data.sales import PROFILES as SALES_PROFILES
from training.data.sales import generate, load_dir, split_last_days
from training.data.schema import SalesPanel
from training.forecast.backtest import CALIBRATED as CALIBRATED_NAME
from training.forecast.backtest import GOAL_IN_STOCK, Policy, backtest, order_up_to_levels
from training.forecast.calibration import (
    COVERAGE_DAYS,
    coverage_table,
    lead_time_coverage,
    pooled_lead_time_coverage,
)
from training.models.tcn import TCNConfig, TCNForecaster
from training.report import format_table, write_report
from training.tasks.tcn import HORIZON, PROFILES, PanelArrays, calibrate_totals, predict

GOAL_COVERAGE = (0.75, 0.85)


def load_tcn(path: Path) -> tuple[TCNForecaster, FeatureSpec, dict]:
    ck = load_checkpoint(path)
    model = TCNForecaster(config_from_dict(TCNConfig, ck["config"]))
    model.load_state_dict(ck["state_dict"])
    return model.eval(), FeatureSpec.from_dict(ck["extra"]["feature_spec"]), ck


def panel_arrays(panel: SalesPanel, pad: int, after: int) -> PanelArrays:
    """The panel as the TCN's window cutter wants it, plus `after` unobserved days past its end (last
    price held, no promotion, no events) so a forecast from a late test day has all its covariate days;
    those days are never scored."""
    data = PanelArrays.from_panel(panel, pad)
    n = panel.n_series
    data.units = np.concatenate([data.units, np.full((n, after), np.nan)], axis=1)
    data.price = np.concatenate([data.price, np.repeat(data.price[:, -1:], after, axis=1)], axis=1)
    data.promo = np.concatenate([data.promo, np.zeros((n, after))], axis=1)
    data.calendar = panel_calendar(panel.start_date, panel.events, pad_before=pad, pad_after=after)
    return data


def forecasts(
    model: TCNForecaster, data: PanelArrays, origins: list[int], spec: FeatureSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts from each origin with the sales up to it only. -> quantiles [N, C, H, k], mean [N, C, H]."""
    qs, means = [], []
    units = data.units
    for origin in origins:  # a handful of origins, each one batched pass over the series
        data.units = np.where(np.arange(units.shape[1]) <= origin, units, np.nan)
        q, m = predict(model, data, origin, spec, "cpu")
        qs.append(q)
        means.append(m)
    data.units = units
    return np.stack(qs, axis=1), np.stack(means, axis=1)


def residual_sd(actual: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per series: sd of daily residuals actual - mean over the observed days ([N, T] -> [N]; 0 when < 2)."""
    seen = np.isfinite(actual)
    n = seen.sum(axis=1)
    r = np.where(seen, actual - mean, 0.0)
    mu = r.sum(axis=1) / np.maximum(n, 1)
    var = (np.where(seen, r - mu[:, None], 0.0) ** 2).sum(axis=1) / np.maximum(n - 1, 1)
    return np.where(n >= 2, np.sqrt(var), 0.0)


def backtest_table(results: dict[str, dict]) -> str:
    rows = [
        {
            "method": ("**" + name + "**") if r["best"] else name,
            "in-stock rate (cycles)": f"{r['in_stock_rate']:.1%}",
            "in-stock days": f"{r['in_stock_days']:.1%}",
            "average stock (units)": f"{r['avg_stock']:.2f}",
            "days of demand": f"{r['avg_stock'] / max(r['avg_demand'], 1e-12):.2f}",
            f">= {GOAL_IN_STOCK:.0%}": "yes" if r["reaches_goal"] else "no",
        }
        for name, r in results.items()
    ]
    return format_table(rows)


def plot(path: Path, coverage: dict[str, float], results: dict[str, dict], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(len(COVERAGE_DAYS))
    kinds = (("rho1", "summed daily quantiles"), ("rho0", "independent days"), ("calibrated", "calibrated"))
    for i, (key, label) in enumerate(kinds):
        ax1.bar(x + (i - 1) * 0.27, [coverage[f"{d}d_{key}"] for d in COVERAGE_DAYS], 0.27, label=label)
    ax1.axhspan(*GOAL_COVERAGE, color="green", alpha=0.15, label="goal 80 +/- 5 %")
    ax1.set_xticks(x, [f"{d}-day total" for d in COVERAGE_DAYS])
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("P10-P90 coverage (test)")
    ax1.legend(fontsize=7, loc="lower left")
    for name, r in results.items():
        ax2.scatter(r["avg_stock"], r["in_stock_rate"], s=60)
        ax2.annotate(name, (r["avg_stock"], r["in_stock_rate"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax2.axhline(GOAL_IN_STOCK, color="green", ls="--", lw=1, label=f"goal: in stock >= {GOAL_IN_STOCK:.0%}")
    ax2.set_xlabel("average stock on hand (units per series and day)")
    ax2.set_ylabel("in-stock rate (review cycles)")
    ax2.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training forecast-eval", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--data", type=Path, default=None, help="sales folder the TCN was trained on (default: generate)")
    ap.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoints/tcn.pt"))
    ap.add_argument("--out", type=Path, default=Path("training/results"))
    ap.add_argument("--reports", type=Path, default=Path("artifacts"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lead-days", type=int, default=7)
    ap.add_argument("--review-days", type=int, default=7)
    ap.add_argument("--service-level", type=float, default=0.95)
    ap.add_argument(
        "--recalibrate",
        action="store_true",
        help="refit the totals' calibration on the validation split (as training does) and store it in the checkpoint",
    )
    ns = ap.parse_args(argv)
    t0 = time.perf_counter()
    policy = Policy(ns.review_days, ns.lead_days, ns.service_level)
    if policy.cover_days > HORIZON or min(policy.review_days, policy.lead_days) < 1:
        raise SystemExit(f"lead time + review period must be 2..{HORIZON} days")
    model, spec, ck = load_tcn(ns.checkpoint)
    panel = load_dir(ns.data) if ns.data else generate(SALES_PROFILES[PROFILES[ns.profile].data], seed=ns.seed)
    if ck.get("data_fingerprint") and sales_fingerprint(panel) != ck["data_fingerprint"]:
        raise SystemExit(f"{ns.checkpoint} was trained on other data; pass the --data / --profile / --seed it used")
    history, test = split_last_days(panel, HORIZON)
    t_hist = history.n_days
    t_train = t_hist - HORIZON
    if ns.recalibrate:  # the same fit as training's, on the same weights: no retraining needed
        hidden = PanelArrays.from_panel(panel, spec.context_days)
        hidden.units = np.where(np.arange(panel.n_days) < t_hist, panel.units, np.nan)  # test sales hidden
        fitted = calibrate_totals(model, hidden, history, t_train, spec, "cpu", 256)
        ck["extra"]["totals_calibration"] = fitted.to_dict()
        tmp = ns.checkpoint.with_suffix(".tmp")
        torch.save(ck, tmp)
        tmp.replace(ns.checkpoint)
    raw = (ck.get("extra") or {}).get("totals_calibration")
    if not raw:
        raise SystemExit(f"{ns.checkpoint} has no totals calibration; retrain, or pass --recalibrate")
    cal = TotalsCalibration.from_dict(raw)
    levels = tuple(float(x) for x in model.cfg.quantiles)
    decisions = list(range(0, HORIZON - policy.cover_days + 1, policy.review_days))
    # First origin: the validation split's start (residuals for the normal approximation), then the decisions.
    q, mean = forecasts(
        model,
        panel_arrays(panel, spec.context_days, HORIZON),
        [t_train - 1] + [t_hist - 1 + d for d in decisions],
        spec,
    )
    sd = residual_sd(history.units[:, t_train:], mean[:, 0])
    coverage = pooled_lead_time_coverage(test.units, q[:, 1:], decisions, levels, cal, mean[:, 1:])
    first_origin = lead_time_coverage(test.units, q[:, 1], levels, cal, mean=mean[:, 1])  # training's figure
    s_levels = order_up_to_levels(q[:, 1:], mean[:, 1:], sd, levels, cal, policy)
    results = backtest(s_levels, test.units, np.array(decisions), policy)

    name = ns.data.name if ns.data else ns.profile
    source = f"--data {ns.data}" if ns.data else f"--profile {ns.profile} --seed {ns.seed}"
    command = f"python -m training forecast-eval {source} --checkpoint {ns.checkpoint}" + (
        " --recalibrate" if ns.recalibrate else ""
    )
    met_cov = all(GOAL_COVERAGE[0] <= coverage[f"{d}d_calibrated"] <= GOAL_COVERAGE[1] for d in COVERAGE_DAYS)
    best = next((n for n, r in results.items() if r["best"]), None)
    md = "\n".join(
        [
            f"# Stock advice on {name}: coverage of demand totals and replenishment backtest",
            "",
            f"`{command}` ({panel.n_series} series, test = the last {HORIZON} days; calibration fitted on the "
            f"validation split before them, {cal.n_fit[6]} 7-day / {cal.n_fit[27]} 28-day totals). Coverage is "
            f"pooled over the origins at test days {', '.join(map(str, decisions))} that each total fits after.",
            "",
            coverage_table(coverage),
            "",
            f"Goal 80 +/- 5 % for the calibrated totals: {'met' if met_cov else 'not met'}.",
            "",
            f"Backtest: review every {policy.review_days} days, lead time {policy.lead_days} days, target service "
            f"level {policy.service_level:.0%}, decisions at test days {', '.join(map(str, decisions))}.",
            "",
            backtest_table(results),
            "",
            f"Goal (in stock >= {GOAL_IN_STOCK:.0%} with the least stock of the methods that reach it): "
            + (f"best is {best}; " if best else "no method reaches it; ")
            + ("met by the served advice." if best == CALIBRATED_NAME else "not met by the served advice."),
            "",
        ]
    )
    ns.out.mkdir(parents=True, exist_ok=True)
    (ns.out / f"forecast_{name}.md").write_text(md)
    png = plot(ns.out / f"forecast_{name}.png", coverage, results, command)
    report = {
        "command": command,
        "policy": asdict(policy),
        "decisions": decisions,
        "lead_time_coverage": coverage,
        "lead_time_coverage_day0": first_origin,
        "backtest": results,
        "calibration_n_totals": {f"{d}d": cal.n_fit[d - 1] for d in COVERAGE_DAYS},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    path = write_report(ns.reports, f"forecast_{name}", report)
    print(md)
    print(f"[forecast-eval] {ns.out / f'forecast_{name}.md'}, {png}, {path}", file=sys.stderr)
    return 0
