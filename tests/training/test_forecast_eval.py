"""`python -m training forecast-eval` on a tiny trained TCN: the tables, the plot and the report are written,
and the numbers in them are the ones the backtest and the training report compute."""

import json
from pathlib import Path

import numpy as np
import pytest

from serving.forecast.calibration import TotalsCalibration
from training.__main__ import main as training_main
from training.checkpoint import load_checkpoint
from training.data.sales import PROFILES as SALES_PROFILES
from training.data.sales import generate, save_dir
from training.forecast.backtest import CALIBRATED, FIXED, NORMAL, SUMMED
from training.tasks.base import TrainArgs
from training.tasks.tcn import run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fc")
    data = save_dir(generate(SALES_PROFILES["tiny"], seed=0), root / "sales")
    report = run(TrainArgs(profile="tiny", data_dir=Path(data), out_dir=root / "art", max_epochs=1))
    return root, Path(data), report


def test_training_stores_a_calibration_of_totals_and_reports_its_coverage(trained):
    root, _, report = trained
    ck = load_checkpoint(root / "art" / "checkpoints" / "tcn.pt")
    cal = TotalsCalibration.from_dict(ck["extra"]["totals_calibration"])
    assert cal.horizon == 28 and cal.base_levels == (0.1, 0.5, 0.9)
    # 4 weekly validation origins: 7-day totals from all of them, 28-day totals from the first only.
    assert cal.n_fit[6] == 4 * cal.n_fit[27] and report["calibration_n_totals"]["28d"] == cal.n_fit[27]
    assert all(0.0 <= report["lead_time_coverage"][f"{d}d_calibrated"] <= 1.0 for d in (7, 14, 28))


def test_forecast_eval_writes_tables_plot_and_report(trained):
    root, data, report = trained
    out = root / "results"
    args = ["forecast-eval", "--data", str(data), "--checkpoint", str(root / "art" / "checkpoints" / "tcn.pt")]
    assert training_main([*args, "--out", str(out), "--reports", str(root / "art")]) == 0
    md = (out / "forecast_sales.md").read_text()
    assert "calibrated on the validation split" in md and CALIBRATED in md and "forecast-eval --data" in md
    assert (out / "forecast_sales.png").stat().st_size > 10_000
    body = json.loads((root / "art" / "reports" / "forecast_sales.json").read_text())
    assert set(body["backtest"]) == {CALIBRATED, SUMMED, FIXED, NORMAL}
    assert body["decisions"] == [0, 7, 14] and body["backtest"][FIXED]["cycles"] == 3 * 20
    # Same forecast from the last history day as in training: the same coverage; the 28-day total has no
    # other origin, so the pooled figure is that one too.
    for key, value in report["lead_time_coverage"].items():
        assert body["lead_time_coverage_day0"][key] == pytest.approx(value)
        if key.startswith("28d"):
            assert body["lead_time_coverage"][key] == pytest.approx(value)
    assert sum(r["best"] for r in body["backtest"].values()) <= 1


def test_forecast_eval_refuses_other_data(trained):
    root, _, _ = trained
    with pytest.raises(SystemExit, match="trained on other data"):
        training_main(
            ["forecast-eval", "--profile", "tiny", "--seed", "5", "--checkpoint", str(root / "art/checkpoints/tcn.pt")]
        )


def test_recalibrate_refits_what_training_stored(trained, tmp_path):
    root, data, _ = trained
    ckpt = tmp_path / "tcn.pt"
    ckpt.write_bytes((root / "art" / "checkpoints" / "tcn.pt").read_bytes())
    before = load_checkpoint(ckpt)["extra"]["totals_calibration"]
    args = ["forecast-eval", "--data", str(data), "--checkpoint", str(ckpt), "--recalibrate"]
    assert training_main([*args, "--out", str(tmp_path / "r"), "--reports", str(tmp_path)]) == 0
    after = load_checkpoint(ckpt)["extra"]["totals_calibration"]
    assert after["n_fit"] == before["n_fit"]
    np.testing.assert_allclose(after["scores"], before["scores"], atol=1e-5)  # same weights, same fit
