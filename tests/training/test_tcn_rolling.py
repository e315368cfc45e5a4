"""forecast-rolling's parts: the cut panel ends k * 28 days earlier with everything else kept, and the table's
mean row is the mean of the months (the training and evaluation it runs are forecast-eval's, tested there)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training.tasks.tcn_rolling import SALES_CSV, cut, table


def test_cut_drops_the_last_days_and_keeps_the_other_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    dates = pd.date_range("2011-01-01", periods=60).strftime("%Y-%m-%d")
    pd.DataFrame({"store_id": "s", "item_id": "a", "date": dates, "units": 1, "price": 2.0, "promo": 0}).to_csv(
        src / SALES_CSV, index=False
    )
    (src / "items.csv").write_text("item_id,category_id\na,c\n")
    out = tmp_path / "out"
    returned = cut(src, out, 28)
    kept = pd.read_csv(out / SALES_CSV)
    assert len(kept) == 32 and kept["date"].max() == "2011-02-01"
    assert len(returned) == 32 and returned["date"].max() == "2011-02-01"  # what was written
    assert (out / "items.csv").read_text() == (src / "items.csv").read_text()


def test_the_mean_row_is_the_mean_of_the_months() -> None:
    rows = [
        {"test_days": f"m{k}", "test_units": 10.0, "valid_units": 12.0, "7d_calibrated": c7, "14d_calibrated": 0.8,
         "28d_calibrated": 0.8, "in_stock": 0.9}
        for k, c7 in enumerate((0.7, 0.9))
    ]  # fmt: skip
    text = table(rows)
    assert "| **mean of 2** (sd) |" in text and "**80.0%** (14.1%)" in text
