"""Loader for the shop's own sales files: the fill rules of a long file -> panel, and every error path
(each error must name the file, the line and the column)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.errors import DataFileError
from training.data.sales import parquet_available
from training.data.sales_io import DEFAULT_PRICE, load_sales

HEADER = "store_id,item_id,date,units,price,promo"


def _write(tmp_path: Path, name: str, *lines: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def sales_csv(tmp_path: Path) -> Path:
    # Two stores; item 10 in store B starts late; a gap on 01-03 for (A, 9); ids are integers.
    return _write(
        tmp_path,
        "sales.csv",
        HEADER,
        "A,9,2024-01-01,3,2.50,0",
        "A,9,2024-01-02,1,,0",
        "A,9,2024-01-04,5,2.00,1",
        "B,10,2024-01-03,2,,",
        "B,10,2024-01-04,0,,0",
        "A,10,2024-01-02,4,1.25,0.5",
    )


@pytest.fixture
def parquet_engine(monkeypatch) -> str:
    """Real Parquet when pyarrow imports; else a pickle stand-in that keeps the typed columns (datetime,
    categorical, int8...) a Parquet file gives back, so the typed-column code paths still run."""
    if parquet_available():
        return "pyarrow"
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda self, path, **kw: self.to_pickle(path))
    monkeypatch.setattr(pd, "read_parquet", lambda path, **kw: pd.read_pickle(path))
    return "stand-in"


def _error(path: Path, call=None) -> DataFileError:
    with pytest.raises(DataFileError) as info:
        (call or load_sales)(path)
    return info.value


# ------------------------------------------------------------------------------------ fill rules


def test_long_file_becomes_a_panel(sales_csv):
    panel = load_sales(sales_csv)
    assert panel.start_date == np.datetime64("2024-01-01") and panel.n_days == 4
    # Series sorted by (store, item); integer ids sort numerically (9 before 10).
    assert list(panel.store_ids) == ["A", "B"] and list(panel.item_ids) == [9, 10]
    assert list(zip(panel.store.tolist(), panel.item.tolist(), strict=True)) == [(0, 0), (0, 1), (1, 1)]
    nan = np.nan
    np.testing.assert_array_equal(panel.units, np.array([[3, 1, 0, 5], [nan, 4, 0, 0], [nan, nan, 2, 0]], np.float32))
    # Last known price forward, first known price backward, 1.0 when a series never states one.
    np.testing.assert_array_equal(panel.price[0], np.array([2.5, 2.5, 2.5, 2.0], np.float32))
    np.testing.assert_array_equal(panel.price[1], np.full(4, 1.25, np.float32))
    np.testing.assert_array_equal(panel.price[2], np.full(4, DEFAULT_PRICE, np.float32))
    np.testing.assert_array_equal(panel.promo[0], np.array([0, 0, 0, 1], np.float32))
    assert panel.promo[1, 1] == 0.5 and panel.promo[2].sum() == 0
    assert panel.events.shape == (4, 0) and panel.expected is None
    assert (panel.category == 0).all()
    for arr in (panel.units, panel.price, panel.promo):
        assert arr.dtype == np.float32


def test_calendar_and_items(sales_csv, tmp_path, caplog):
    calendar = _write(tmp_path, "cal.csv", "date,holiday,payday", "2024-01-02,1,0", "2024-01-04,0,1", "2023-12-31,1,1")
    items = _write(tmp_path, "items.csv", "item_id,category_id", "10,toys", "9,food", "11,garden")
    with caplog.at_level(logging.WARNING, logger="training.data.sales_io"):
        panel = load_sales(sales_csv, calendar, items)
    assert panel.event_names == ("holiday", "payday")
    np.testing.assert_array_equal(panel.events, np.array([[0, 0], [1, 0], [0, 0], [0, 1]], np.int8))
    assert "2 of 4 sales days are not in the calendar" in caplog.text  # 01-01 and 01-03
    # Categories in sorted id order over the panel's items: food=0, toys=1 (garden sells nothing).
    assert panel.category.tolist() == [0, 1, 1]


def test_category_column_in_the_sales_file(tmp_path):
    header = "store_id,item_id,date,units,category_id"
    path = _write(tmp_path, "s.csv", header, "A,x,2024-01-01,1,b", "A,y,2024-01-01,1,a")
    assert load_sales(path).category.tolist() == [1, 0]


def test_text_ids_keep_their_spelling(tmp_path):
    path = _write(tmp_path, "s.csv", "Store_ID, item_id ,DATE,units", "S1,007,2024-01-01,1", "S1,7,2024-01-01,2")
    panel = load_sales(path)  # header case and spaces do not matter
    assert list(panel.item_ids) == ["007", "7"] and panel.units[:, 0].tolist() == [1, 2]


def test_blank_lines_are_counted_not_silent(tmp_path, caplog):
    path = _write(tmp_path, "s.csv", "store_id,item_id,date,units", "A,1,2024-01-01,1", "", "A,1,2024-01-02,x")
    with caplog.at_level(logging.WARNING, logger="training.data.sales_io"):
        err = _error(path)
    assert "skipped 1 blank lines" in caplog.text
    assert err.line == 4  # line numbers still count the blank line


def test_parquet_input(tmp_path, parquet_engine):
    frame = pd.DataFrame(
        {
            "store_id": [1, 1],
            "item_id": ["a", "a"],
            "date": pd.to_datetime(["2024-01-01", "2024-01-03"]),
            "units": [2.0, 1.5],
        }
    )
    frame.to_parquet(tmp_path / "s.parquet")
    panel = load_sales(tmp_path / "s.parquet")
    np.testing.assert_array_equal(panel.units, np.array([[2.0, 0.0, 1.5]], np.float32))
    frame.loc[1, "units"] = -1.0
    frame.to_parquet(tmp_path / "bad.parquet")
    err = _error(tmp_path / "bad.parquet")
    assert (err.line, err.column) == (2, "units")  # Parquet: 1-based row numbers


# ---------------------------------------------------------------------------------------- errors

SALES_ERRORS = [
    # (rows after the header, expected line, column, words in the message)
    (["A,1,2024-01-01,1,1.0,0", "A,1,2024-01-02,two,1.0,0"], 3, "units", "not a number"),
    (["A,1,2024-01-01,-1,1.0,0"], 2, "units", "negative units"),
    (["A,1,2024-01-01,nan,1.0,0"], 2, "units", "not a number"),
    (["A,1,2024-01-01,,1.0,0"], 2, "units", "empty cell"),
    (["A,1,2024-01-01,1,1.0,0", "A,1,01/02/2024,1,1.0,0"], 3, "date", "unparsable date"),
    (["A,1,2024-13-01,1,1.0,0"], 2, "date", "unparsable date"),
    (["A,1,2024-01-01,1,1.0,0", "A,2,2024-01-01,1,1.0,0", "A,1,2024-01-01,3,1.0,0"], 4, "date", "line 2"),
    (["A,1,2024-01-01,1,0,0"], 2, "price", "not > 0"),
    (["A,1,2024-01-01,1,cheap,0"], 2, "price", "not a number"),
    (["A,1,2024-01-01,1,1.0,2"], 2, "promo", "outside [0, 1]"),
    (["A,1,2024-01-01,1,1.0,yes"], 2, "promo", "not a number"),
    (["A,,2024-01-01,1,1.0,0"], 2, "item_id", "empty cell"),
]


@pytest.mark.parametrize(("rows", "line", "column", "words"), SALES_ERRORS)
def test_bad_sales_rows_name_line_and_column(tmp_path, rows, line, column, words):
    path = _write(tmp_path, "sales.csv", HEADER, *rows)
    err = _error(path)
    assert (err.line, err.column) == (line, column)
    assert words in str(err) and "sales.csv" in str(err)


def test_duplicate_row_names_both_lines(tmp_path):
    path = _write(tmp_path, "s.csv", HEADER, "A,1,2024-01-01,1,1,0", "A,1,2024-01-01,2,1,0")
    message = str(_error(path))
    assert "line 3" in message and "first at line 2" in message and "duplicate" in message


def test_missing_column(tmp_path):
    err = _error(_write(tmp_path, "s.csv", "store_id,item_id,day,units", "A,1,2024-01-01,1"))
    assert (err.line, err.column) == (1, "date") and "missing column" in str(err)


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty file" in str(_error(empty))
    assert "no data rows" in str(_error(_write(tmp_path, "header.csv", HEADER)))


def test_missing_file_and_ragged_row(tmp_path):
    assert "file not found" in str(_error(tmp_path / "nope.csv"))
    err = _error(_write(tmp_path, "s.csv", "store_id,item_id,date,units", "A,1,2024-01-01,1", "A,1,2024-01-02,1,9"))
    assert err.line == 3 and "malformed" in str(err)


def test_repeated_column(tmp_path):
    err = _error(_write(tmp_path, "s.csv", "store_id,item_id,date,units,Units", "A,1,2024-01-01,1,2"))
    assert err.column == "units" and "twice" in str(err)


def test_item_with_two_categories_in_the_sales_file(tmp_path):
    path = _write(
        tmp_path, "s.csv", "store_id,item_id,date,units,category_id", "A,x,2024-01-01,1,a", "B,x,2024-01-01,1,b"
    )
    err = _error(path)
    assert err.column == "category_id" and "two categories" in str(err)


CALENDAR_ERRORS = [
    (["day,holiday", "2024-01-01,1"], 1, "date", "missing column"),
    (["date,holiday", "2024-01-01,2"], 2, "holiday", "not 0 or 1"),
    (["date,holiday", "2024-01-01,x"], 2, "holiday", "not a number"),
    (["date,holiday", "2024-01-01,1", "2024-01-01,0"], 3, "date", "duplicate date"),
    (["date,holiday", "someday,1"], 2, "date", "unparsable date"),
]


@pytest.mark.parametrize(("lines", "line", "column", "words"), CALENDAR_ERRORS)
def test_bad_calendar(sales_csv, tmp_path, lines, line, column, words):
    calendar = _write(tmp_path, "cal.csv", *lines)
    err = _error(sales_csv, lambda p: load_sales(p, calendar_path=calendar))
    assert (err.line, err.column) == (line, column) and words in str(err) and "cal.csv" in str(err)


ITEMS_ERRORS = [
    (["item,category_id", "9,a"], "items.csv", 1, "item_id", "missing column"),
    (["item_id,category_id", "9,a", "10,b", "9,c"], "items.csv", 4, "item_id", "duplicate item_id"),
    (["item_id,category_id", "9,a"], "sales.csv", 5, "item_id", "not in items.csv"),  # item 10 unlisted
    (["item_id,category_id", "9,a", "10,"], "items.csv", 3, "category_id", "empty cell"),
]


@pytest.mark.parametrize(("lines", "file", "line", "column", "words"), ITEMS_ERRORS)
def test_bad_items(sales_csv, tmp_path, lines, file, line, column, words):
    items = _write(tmp_path, "items.csv", *lines)
    err = _error(sales_csv, lambda p: load_sales(p, items_path=items))
    assert (err.line, err.column) == (line, column) and words in str(err) and file in str(err)
