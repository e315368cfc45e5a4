"""`python -m training train two_tower|din|tcn|intent|all --profile quick|full [--data DIR] [--out DIR]`;
`python -m training price-eval --profile quick` (training/pricing/evaluate.py);
`python -m training forecast-eval --profile quick` (training/tasks/tcn_eval.py);
`python -m training intent-oos --profile quick` (training/tasks/intent_oos.py);
`python -m training build --profile quick --out artifacts [--jobs N]` (side by side, training/build.py)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from training.tasks import TASKS
from training.tasks.base import PROFILE_NAMES, TrainArgs


def run_task(name: str, args: TrainArgs) -> dict:
    if name not in TASKS:
        raise SystemExit(f"unknown model '{name}'; choose from {', '.join(TASKS)} or all")
    module = importlib.import_module(TASKS[name])
    return module.run(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["price-eval"]:  # its own options (training/pricing/evaluate.py)
        from training.pricing.evaluate import main as price_eval

        return price_eval(argv[1:])
    if argv[:1] == ["forecast-eval"]:  # its own options (training/tasks/tcn_eval.py)
        from training.tasks.tcn_eval import main as forecast_eval

        return forecast_eval(argv[1:])
    if argv[:1] == ["forecast-rolling"]:  # its own options (training/tasks/tcn_rolling.py)
        from training.tasks.tcn_rolling import main as forecast_rolling

        return forecast_rolling(argv[1:])
    if argv[:1] == ["intent-oos"]:  # its own options (training/tasks/intent_oos.py)
        from training.tasks.intent_oos import main as intent_oos

        return intent_oos(argv[1:])
    if argv[:1] == ["build"]:  # its own options (training/build.py)
        from training.build import main as build

        return build(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one model (or all) and write its checkpoint and report")
    train.add_argument("model", choices=[*TASKS, "all"])
    train.add_argument("--profile", choices=PROFILE_NAMES, default="quick")
    train.add_argument("--data", type=Path, default=None, help="data directory (default: generate)")
    train.add_argument("--out", type=Path, default=Path("artifacts"))
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto|cpu|cuda")
    train.add_argument("--max-epochs", type=int, default=None)
    sub.add_parser("price-eval", help="pricing against the known optimum (see python -m training price-eval -h)")
    sub.add_parser("forecast-eval", help="coverage of demand totals, replenishment backtest (forecast-eval -h)")
    sub.add_parser("forecast-rolling", help="forecast-eval over several test months (forecast-rolling -h)")
    sub.add_parser("build", help="train several models side by side (python -m training build -h)")
    sub.add_parser("intent-oos", help="out-of-scope detection with held-out intents (python -m training intent-oos -h)")
    ns = parser.parse_args(argv)

    args = TrainArgs(ns.profile, ns.data, ns.out, ns.seed, ns.device, ns.max_epochs)
    names = list(TASKS) if ns.model == "all" else [ns.model]
    for name in names:
        t0 = time.perf_counter()
        run_task(name, args)
        print(f"[{name}] done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
