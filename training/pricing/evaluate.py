"""`python -m training price-eval --profile quick [--checkpoint artifacts/checkpoints/tcn.pt] [--out training/results]`

The pricing evaluation against the known optimum: the trained TCN's advice (through /v1/price's rule)
and four baselines, each scored by the profit it would have made under the generator's true demand over
the 28 test days, as a share of the oracle's profit (training/pricing/cases.py). Writes
<out>/pricing_<profile>.md (tables), <out>/pricing_<profile>.png (profit vs price for one item) and
artifacts/reports/pricing_<profile>.json (`_change<pct>` appended when --max-change-pct is not 20).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from serving.price.rails import candidate_prices
from training.data.fingerprints import sales_fingerprint
from training.data.sales import PROFILES as SALES_PROFILES
from training.data.sales import generate, price_truth, split_last_days
from training.pricing import baselines
from training.pricing.cases import Cases, build_cases
from training.pricing.tcn_advice import advise, load_tcn
from training.report import format_table, write_report
from training.tasks.tcn import PROFILES as TCN_PROFILES

GOAL = 0.95
ADVICE = "TCN advice (/v1/price)"


def _at(price: np.ndarray, edge: np.ndarray) -> np.ndarray:
    return np.abs(price - edge) <= 1e-6 * np.maximum(edge, 1.0) + 0.005  # within half a cent


def score(cases: Cases, prices: dict[str, np.ndarray]) -> tuple[list[dict], dict]:
    oracle = cases.true_profit(cases.oracle_price())
    rows, raw = [], {}
    for name, p in prices.items():
        profit = cases.true_profit(p)
        ratio = profit / np.maximum(oracle, 1e-12)
        raw[name] = {"share_of_oracle": float(profit.sum() / oracle.sum()), "prices": p}
        rows.append(
            {
                "method": name,
                "profit / oracle": f"{profit.sum() / oracle.sum():.1%}",
                "median series": f"{np.median(ratio):.1%}",
                "series >= 95 %": f"{np.mean(ratio >= GOAL):.0%}",
                "mean price error (abs)": f"{np.mean(np.abs(np.log(p / cases.oracle_price()))):.1%}",
                "at floor / ceiling": f"{_at(p, cases.low).mean():.0%} / {_at(p, cases.high).mean():.0%}",
            }
        )
    return rows, raw


def rail_table(cases: Cases, advice: np.ndarray) -> list[dict]:
    """How often each rail holds the oracle (and our advice) at an end of the allowed range."""
    oracle = cases.oracle_price()
    out = []
    for end, edge, rules in (
        ("floor", cases.low, [r.low_rule for r in cases.ranges]),
        ("ceiling", cases.high, [r.high_rule for r in cases.ranges]),
    ):
        for rule in sorted(set(rules)):
            mine = np.array(rules) == rule
            out.append(
                {
                    "end": end,
                    "set by": rule,
                    "oracle held there": f"{np.mean(_at(oracle, edge) & mine):.1%}",
                    "advice there": f"{np.mean(_at(advice, edge) & mine):.1%}",
                }
            )
    return out


def plot_case(path: Path, cases: Cases, i: int, grid: np.ndarray, predicted: np.ndarray, prices: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = cases.low[i], cases.high[i]
    xs = np.linspace(lo / 1.15, hi * 1.15, 200)

    def true(x: np.ndarray | float) -> np.ndarray:
        return (
            (x - cases.cost[i]) * cases.base_units[i].sum() * (np.asarray(x) / cases.current[i]) ** cases.elasticity[i]
        )

    fig, ax = plt.subplots(figsize=(8.5, 5))
    ax.axvspan(lo, hi, color="0.93", label="allowed by the guard rails")
    ax.plot(xs, true(xs), color="k", lw=2, label=f"true profit (generator, elasticity {cases.elasticity[i]:.2f})")
    oracle = float(cases.oracle_price()[i])
    ax.axvline(oracle, color="k", ls=":", label=f"oracle {oracle:.2f}")
    styles = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for (name, p), color in zip(prices.items(), styles, strict=False):
        x = float(p[i])
        share = true(x) / true(oracle)
        ax.plot([x], [true(x)], "D" if name == ADVICE else "v", color=color, ms=10 if name == ADVICE else 8,
                label=f"{name}: {x:.2f} ({share:.1%} of the oracle)")  # fmt: skip
    ax.set_xlabel("price held over the 28 test days")
    ax.set_ylabel("true profit over the 28 test days")
    # The TCN's own curve on its own axis: its shape, not its level, sets the price.
    twin = ax.twinx()
    twin.plot(grid, predicted, "o--", color="tab:blue", ms=3, alpha=0.6)
    twin.set_ylabel("TCN's expected profit at the candidates (dashed)", color="tab:blue")
    ax.set_title(
        f"series {int(cases.series[i])}: unit cost {cases.cost[i]:.2f}, current price {cases.current[i]:.2f}",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="lower center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pick_example(cases: Cases) -> int:
    """A well-selling case whose optimum lies inside the allowed range (the interesting kind): the one at the
    75th percentile of oracle profit among them; else the best-selling case."""
    oracle = cases.oracle_price()
    profit = cases.true_profit(oracle)
    inside = np.flatnonzero(~_at(oracle, cases.low) & ~_at(oracle, cases.high))
    if not inside.size:
        return int(np.argmax(profit))
    ranked = inside[np.argsort(profit[inside])]
    return int(ranked[int(0.75 * (len(ranked) - 1))])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training price-eval", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(TCN_PROFILES), default="quick")
    ap.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoints/tcn.pt"))
    ap.add_argument("--out", type=Path, default=Path("training/results"))
    ap.add_argument("--reports", type=Path, default=Path("artifacts"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-change-pct", type=float, default=20.0)
    ap.add_argument("--min-margin-pct", type=float, default=10.0)
    ap.add_argument("--candidates", type=int, default=21)
    ap.add_argument("--trees", type=int, default=60)
    ns = ap.parse_args(argv)
    t0 = time.perf_counter()

    cfg = SALES_PROFILES[TCN_PROFILES[ns.profile].data]
    panel = generate(cfg, seed=ns.seed)
    model, spec, ck = load_tcn(ns.checkpoint)
    if ck.get("data_fingerprint") and ck["data_fingerprint"] != sales_fingerprint(panel):
        raise SystemExit(f"{ns.checkpoint} was trained on other data than profile {ns.profile!r}, seed {ns.seed}")
    history, test = split_last_days(panel, spec.horizon)
    rails = {"max_change_pct": ns.max_change_pct, "min_margin_pct": ns.min_margin_pct}
    cases = build_cases(history, test, price_truth(cfg, ns.seed), seed=ns.seed, **rails)
    grids = [candidate_prices(r, ns.candidates) for r in cases.ranges]
    levels = tuple(ck["config"]["quantiles"])

    advice = advise(model, spec, levels, history, cases, grids, spec.horizon)
    loglog, slopes = baselines.loglog(history, cases, grids)
    cost_plus, markup = baselines.cost_plus(cases)
    prices = {
        ADVICE: advice.price,
        "keep the current price": baselines.keep(cases),
        f"cost-plus ({markup:.0%} markup)": cost_plus,
        "per-series log-log regression": loglog,
        "random forest over the price grid": baselines.random_forest(history, cases, grids, ns.seed, ns.trees),
    }
    rows, raw = score(cases, prices)
    ours = raw[ADVICE]["share_of_oracle"]
    best_other = max(v["share_of_oracle"] for k, v in raw.items() if k != ADVICE)
    met = ours >= GOAL and ours > best_other
    i = pick_example(cases)
    stem = f"pricing_{ns.profile}" + ("" if ns.max_change_pct == 20 else f"_change{ns.max_change_pct:g}")
    png = plot_case(ns.out / f"{stem}.png", cases, i, grids[i], advice.predicted_profit[i], prices)
    ok = np.isfinite(advice.elasticity)
    corr = float(np.corrcoef(advice.elasticity[ok], cases.elasticity[ok])[0, 1])
    mae = float(np.mean(np.abs(advice.elasticity[ok] - cases.elasticity[ok])))
    tcn_metrics = ck.get("metrics", {})
    at_current = advice.demand_at_current
    bias = float(at_current.sum() / cases.base_units.sum())
    wrmsse, coverage = (float(tcn_metrics.get(k, float("nan"))) for k in ("wrmsse", "coverage_p10_p90"))
    command = (
        f"python -m training price-eval --profile {ns.profile} --checkpoint {ns.checkpoint} "
        f"--max-change-pct {ns.max_change_pct:g} --min-margin-pct {ns.min_margin_pct:g}"
    )
    lines = [
        f"# Pricing against the known optimum ({ns.profile} profile, seed {ns.seed})",
        "",
        f"`{command}` ({time.perf_counter() - t0:.0f} s). {len(cases.series)} series, priced on the last history "
        f"day for the {spec.horizon} test days; guard rails: +-{ns.max_change_pct:g} % around the current price, "
        f"margin >= {ns.min_margin_pct:g} % over a unit cost of 40-80 % of the current price; "
        f"{ns.candidates} candidates per series. Profit is what each price earns under the generator's true demand.",
        "",
        format_table(rows),
        "",
        f"Goal (>= {GOAL:.0%} of the oracle's profit, ahead of every baseline): **{'met' if met else 'not met'}** "
        f"({ours:.1%} vs the best baseline's {best_other:.1%}).",
        "",
        "Where the guard rails hold the price (share of all series):",
        "",
        format_table(rail_table(cases, advice.price)),
        "",
        f"The TCN's price response: elasticity over the candidates vs the generator's, correlation {corr:.2f}, "
        f"mean absolute error {mae:.2f} (mean {np.nanmean(advice.elasticity):.2f} vs {cases.elasticity.mean():.2f}); "
        f"the log-log regression's: correlation {np.corrcoef(slopes, cases.elasticity)[0, 1]:.2f}, "
        f"mean {slopes.mean():.2f}. The TCN's expected units at the current price over the test days: "
        f"{bias:.1%} of the true ones in total. Checkpoint forecast accuracy: WRMSSE {wrmsse:.3f}, "
        f"P10-P90 coverage {coverage:.1%}.",
        "",
        f"![profit vs price, series {int(cases.series[i])}]({png.name})",
        "",
    ]
    md = ns.out / f"{stem}.md"
    md.write_text("\n".join(lines))
    report = {
        "command": command,
        "methods": {k: v["share_of_oracle"] for k, v in raw.items()},
        "goal_met": bool(met),
        "elasticity_corr": corr,
        "elasticity_mae": mae,
        "demand_at_current_vs_true": bias,
        "rails": rails,
        "n_series": len(cases.series),
        "markup": markup,
        "tcn_metrics": tcn_metrics,
    }
    write_report(ns.reports, stem, report)
    print("\n".join(lines))
    print(f"[price-eval] {md}, {png}", file=sys.stderr)
    return 0
