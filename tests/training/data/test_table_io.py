"""The shared table reader (training.data.table_io): encodings, line ends, blank lines, repeated columns,
Parquet failures, line numbers; and that both user-file loaders get each of those through it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.behavior_io import load_behavior
from training.data.errors import DataFileError
from training.data.sales_io import load_sales
from training.data.table_io import read_table

EVENTS = ("user_id", "item_id", "category_id", "event_type", "timestamp")


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _error(call, *args, **kw) -> DataFileError:
    with pytest.raises(DataFileError) as info:
        call(*args, **kw)
    return info.value


# ------------------------------------------------------------------------------------ CSV text


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_line_ends_leave_no_carriage_return_and_keep_line_numbers(tmp_path, newline):
    path = _write(tmp_path, "t.csv", newline.join(["a,b", "1,x", "", "2,y", ""]))
    table = read_table(path)
    assert list(table.frame.columns) == ["a", "b"]
    assert table.frame["b"].tolist() == ["x", "y"]  # no '\r' left on the last cell of a line
    assert table.lines.tolist() == [2, 4]


def test_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = _write(tmp_path, "t.csv", "\ufeffStore_ID,units\r\nA,1\r\n")
    table = read_table(path)
    assert list(table.frame.columns) == ["store_id", "units"] and table.frame["store_id"].tolist() == ["A"]
    headerless = _write(tmp_path, "h.csv", "\ufeff7,x\n8,y\n")
    table = read_table(headerless, header_names=("id",), headerless_names=("id", "name"))
    assert table.frame["id"].tolist() == ["7", "8"] and table.lines.tolist() == [1, 2]


@pytest.mark.parametrize("header", ["store_id,units,units", "store_id,units, Units "])
def test_a_column_named_twice_is_an_error(tmp_path, header):
    err = _error(read_table, _write(tmp_path, "t.csv", f"{header}\nA,1,2\n"))
    assert (err.line, err.column) == (1, "units") and "appears twice" in str(err) and "t.csv" in str(err)


def test_trailing_commas_are_not_repeated_names(tmp_path):
    table = read_table(_write(tmp_path, "t.csv", "a,b,,\n1,2,,\n"))
    assert table.frame.columns[:2].tolist() == ["a", "b"] and table.frame["a"].tolist() == ["1"]


def test_blank_lines_are_skipped_and_counted(tmp_path, caplog):
    path = _write(tmp_path, "t.csv", "a,b\n1,x\n\n  ,  \n2,y\n\n")
    with caplog.at_level(logging.WARNING, logger="training.data.table_io"):
        table = read_table(path)
    assert table.frame["a"].tolist() == ["1", "2"] and table.lines.tolist() == [2, 5]
    assert "skipped 3 blank lines (first at line 3)" in caplog.text


def test_blank_lines_kept_as_empty_rows_when_asked(tmp_path, caplog):
    path = _write(tmp_path, "t.csv", "a,b\n1,x\n\n2,\n")
    with caplog.at_level(logging.WARNING):
        table = read_table(path, keep_blank_lines=True)
    assert table.lines.tolist() == [2, 3, 4] and "blank" not in caplog.text
    assert table.frame["a"].isna().tolist() == [False, True, False]
    assert table.frame["b"].isna().tolist() == [False, True, True]  # an empty cell is missing
    assert table.cell(2, "b") == ""  # ... and shows as the file holds it


def test_blank_line_warning_goes_to_the_callers_logger(tmp_path, caplog):
    path = _write(tmp_path, "t.csv", "a\n1\n\n2\n")
    with caplog.at_level(logging.WARNING):
        read_table(path, logger=logging.getLogger("some.loader"))
    assert [r.name for r in caplog.records] == ["some.loader"]


def test_header_detection_and_headerless_columns(tmp_path):
    path = _write(tmp_path, "t.csv", "1,2,3,view,5\n1,3,3,buy,6\n")
    table = read_table(path, header_names=EVENTS, headerless_names=EVENTS)
    assert list(table.frame.columns) == list(EVENTS) and table.lines.tolist() == [1, 2]
    assert table.header_line is None
    with_header = _write(tmp_path, "h.csv", "Timestamp,user_id\n5,1\n")
    table = read_table(with_header, header_names=EVENTS, headerless_names=EVENTS)
    assert list(table.frame.columns) == ["timestamp", "user_id"] and table.header_line == 1
    err = _error(read_table, path, header_names=("item_id",))
    assert err.line == 1 and "no header line naming item_id" in str(err)
    err = _error(read_table, path, header_names=EVENTS, headerless_names=EVENTS[:4])
    assert err.line == 1 and "no header line and 5 columns; expected 4" in str(err)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "empty file"),
        ("a,b\n", 2, "no data rows"),
        ("a,b\n\n\n", 2, "no data rows"),
        ("a,b\n1,2\n3,4,5\n", 3, "malformed row"),
        ("a,b\n1,2,3\n", 2, "malformed row"),  # pandas would silently take '1' as an index
    ],
)
def test_csv_failures_name_the_line(tmp_path, text, line, words):
    err = _error(read_table, _write(tmp_path, "t.csv", text))
    assert err.line == line and words in str(err) and str(err).startswith(str(tmp_path / "t.csv"))


def test_missing_file_folder_and_wrong_encoding(tmp_path):
    assert "file not found" in str(_error(read_table, tmp_path / "nope.csv"))
    assert "file not found" in str(_error(read_table, tmp_path))  # a folder is not a file
    err = _error(read_table, _write(tmp_path, "t.csv", "name\nJürgen\n", encoding="latin-1"))
    assert "not a UTF-8 text file" in str(err) and "t.csv" in str(err)


def test_table_helpers(tmp_path):
    table = read_table(_write(tmp_path, "t.csv", "a,b\n x ,1\n\ny,\nx,2\n"))
    codes, uniques = table.distinct("a")
    assert uniques[codes].tolist() == ["x", "y", "x"]  # stripped text per row
    codes, uniques = table.distinct("b")
    assert uniques[codes].tolist() == ["1", "", "2"]  # empty cell -> ''
    err = table.error("bad", row=1, column="b")
    assert (err.line, err.column) == (4, "b")  # line numbers count the skipped blank line
    err = _error(table.require, ("a", "c"))
    assert (err.line, err.column) == (1, "c") and "found: a, b" in str(err)
    table.keep(np.array([True, False, True]))
    assert table.frame["b"].tolist() == ["1", "2"] and table.lines.tolist() == [2, 5]


# ------------------------------------------------------------------------------------- Parquet


@pytest.fixture
def pyarrow():
    return pytest.importorskip("pyarrow")


def test_parquet_typed_columns_and_row_numbers(tmp_path, pyarrow):
    frame = pd.DataFrame({" Units ": [1.5, 2.0], "Date": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    frame.index = [10, 20]
    frame.to_parquet(tmp_path / "t.parquet")
    table = read_table(tmp_path / "t.parquet")
    assert list(table.frame.columns) == ["units", "date"] and table.lines.tolist() == [1, 2]
    assert table.frame["units"].dtype == np.float64 and table.header_line is None
    assert table.frame.index.tolist() == [0, 1]
    assert (table.error("x", row=1, column="units").line, table.cell(0, "units")) == (2, 1.5)
    err = _error(table.require, ("store_id",))
    assert (err.line, err.column) == (None, "store_id")


def test_parquet_column_named_twice(tmp_path, pyarrow):
    pd.DataFrame({"units": [1], "Units": [2]}).to_parquet(tmp_path / "t.pq")
    err = _error(read_table, tmp_path / "t.pq")
    assert err.column == "units" and err.line is None and "appears twice" in str(err)


def test_parquet_empty_and_corrupt(tmp_path, pyarrow):
    pd.DataFrame({"a": pd.Series([], dtype="int64")}).to_parquet(tmp_path / "empty.parquet")
    assert "empty file: no rows" in str(_error(read_table, tmp_path / "empty.parquet"))
    corrupt = tmp_path / "bad.parquet"
    corrupt.write_bytes(b"PAR1 not really")
    err = _error(read_table, corrupt)
    assert str(err).startswith(str(corrupt)) and "not a readable Parquet file" in str(err)


def test_parquet_without_an_engine(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")

    def no_engine(*args, **kw):
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    err = _error(read_table, path)
    assert "cannot read Parquet here" in str(err) and "save the file as CSV" in str(err)


# ---------------------------------------------------------------------- through both loaders

SALES = "store_id,item_id,date,units\nA,1,2024-01-01,1\nA,1,2024-01-02,2\n"
BEHAVIOR = "user_id,item_id,category_id,event_type,timestamp\n1,2,3,view,5\n1,4,3,click,6\n"
LOADERS = {
    "sales": (load_sales, SALES, "units"),
    "behavior": (load_behavior, BEHAVIOR, "timestamp"),
}


@pytest.mark.parametrize("kind", LOADERS)
def test_loaders_read_bom_and_crlf_files(tmp_path, kind):
    load, text, _ = LOADERS[kind]
    plain = load(_write(tmp_path, "plain.csv", text))
    excel = load(_write(tmp_path, "excel.csv", "\ufeff" + text.replace("\n", "\r\n")))
    for a, b in zip(vars(plain).values(), vars(excel).values(), strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", LOADERS)
def test_loaders_reject_a_column_named_twice(tmp_path, kind):
    load, text, column = LOADERS[kind]
    header, rest = text.split("\n", 1)
    doubled = header + "," + column + "\n" + "".join(row + ",9\n" for row in rest.splitlines())
    err = _error(load, _write(tmp_path, "t.csv", doubled))
    assert (err.line, err.column) == (1, column) and "appears twice" in str(err)


@pytest.mark.parametrize("kind", LOADERS)
def test_loaders_report_a_corrupt_parquet_file(tmp_path, kind, pyarrow):
    load = LOADERS[kind][0]
    corrupt = tmp_path / "data.parquet"
    corrupt.write_bytes(b"PAR1 not really")
    assert "not a readable Parquet file" in str(_error(load, corrupt))


def test_loaders_blank_line_policies(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        panel = load_sales(_write(tmp_path, "s.csv", SALES.replace("\nA,1,2024-01-02", "\n\nA,1,2024-01-02")))
        log = load_behavior(_write(tmp_path, "e.csv", BEHAVIOR + "\n"))
    assert panel.units.tolist() == [[1.0, 2.0]] and log.n_events == 2
    by_logger = {r.name: r.getMessage() for r in caplog.records}
    assert "skipped 1 blank lines (first at line 3)" in by_logger["training.data.sales_io"]
    assert "dropped 1 of 3 rows with an empty cell (first at line 4" in by_logger["training.data.behavior_io"]
