"""The one reader of the shop's data files (CSV or Parquet) that both user-file loaders share.

`read_table(path)` -> `Table`: the file's cells (CSV: every cell as text, an empty cell as NaN;
Parquet: the typed columns), lower-cased and stripped column names, and the 1-based line (CSV, the
header is line 1) or row number (Parquet) of every row, so that a loader's `DataFileError` names the
file, the line and the column of the bad cell.

What every file gets, whatever the loader:
- CSV: UTF-8 with or without a byte-order mark; LF, CRLF or CR line ends; blank lines are skipped and
  counted in a warning (line numbers still count them), or kept as rows of empty cells when the loader's
  own dirty-row policy counts them (`keep_blank_lines=True`); a ragged row fails naming its line; a file
  that is not UTF-8 fails. Line numbers are exact unless a quoted cell spans lines.
- Parquet: a missing engine or a corrupt file fails with the file named, not with pyarrow's exception.
- Both: a column named twice (in any case or spacing: `units,Units` or `units,units`) fails naming it;
  a missing file, an empty file and a header without rows fail.
- Header: always the first line, unless the loader passes `header_names`: then the first line is a
  header when it names at least one of them, else the columns are `headerless_names` by position.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.data.errors import DataFileError

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_OPTIONS: dict[str, Any] = {
    "dtype": str,
    "keep_default_na": False,
    "na_values": [""],  # only an empty cell is missing: "NA" or "null" stay text for the loader to judge
    "skipinitialspace": True,
    "skip_blank_lines": False,  # keeps row -> line numbering exact; blank lines are handled below
    "encoding": "utf-8-sig",  # a byte-order mark (Excel's "CSV UTF-8") is not part of the first name
}


class Table:
    """A file's columns, the 1-based line (CSV) or row (Parquet) of each row, and error helpers."""

    def __init__(self, path: Path, frame: pd.DataFrame, lines: np.ndarray, header_line: int | None, is_csv: bool):
        self.path = path
        self.frame = frame
        self.lines = lines
        self.header_line = header_line  # 1 for a CSV header, None for Parquet and headerless CSV
        self.is_csv = is_csv

    def __len__(self) -> int:
        return len(self.frame)

    def error(self, message: str, row: int | None = None, column: str | None = None) -> DataFileError:
        """A `DataFileError` at row `row` (0-based index into the table) and `column`."""
        line = None if row is None else int(self.lines[row])
        return DataFileError(self.path, message, line=line, column=column)

    def require(self, columns: Sequence[str]) -> None:
        """Fail on the first of `columns` the file lacks, naming the columns it has."""
        for col in columns:
            if col not in self.frame.columns:
                found = ", ".join(map(str, self.frame.columns)) or "none"
                raise DataFileError(
                    self.path, f"missing column '{col}' (found: {found})", line=self.header_line, column=col
                )

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where `mask` (bool [rows]) is True, with their line numbers."""
        self.frame = self.frame.loc[mask].reset_index(drop=True)
        self.lines = self.lines[mask]

    def cell(self, row: int, col: str) -> Any:
        """The cell as the file holds it, for messages: a CSV's empty cell is ''."""
        value = self.frame[col].iloc[row]
        return "" if self.is_csv and pd.isna(value) else value

    def distinct(self, col: str) -> tuple[np.ndarray, np.ndarray]:
        """-> (int64 code per row, the distinct values). Conversions run on the distinct values only:
        a sales file has millions of rows but few distinct dates, ids, unit counts or prices. Text
        values come stripped, an empty cell as ''; a missing value of a typed column has code -1."""
        values = self.frame[col]
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        uniques = np.asarray(uniques, dtype=object)
        if not (pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_datetime64_any_dtype(values.dtype)):
            uniques = np.array([str(u).strip() for u in uniques] + [""], dtype=object)  # loop over distinct values
            codes = np.where(codes < 0, uniques.size - 1, codes)  # empty cell -> the trailing ''
        return codes.astype(np.int64), uniques

    @staticmethod
    def first_row(codes: np.ndarray, bad_values: np.ndarray) -> int:
        """Row of the first cell whose code is among the bad distinct values (a bool mask over them)."""
        return int(np.argmax(bad_values[codes]))


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def read_table(
    path: str | Path,
    *,
    header_names: Sequence[str] | None = None,
    headerless_names: Sequence[str] | None = None,
    keep_blank_lines: bool = False,
    logger: logging.Logger | None = None,
) -> Table:
    """Read a CSV or Parquet file (see the module doc). `logger`: where the blank-line warning goes
    (the calling loader's logger, so its users filter one name)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "file not found")
    if is_parquet(path):
        return _read_parquet(path)
    return _read_csv(path, header_names, headerless_names, keep_blank_lines, logger or log)


def _read_parquet(path: Path) -> Table:
    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:  # no engine: say so instead of a generic failure
        raise DataFileError(path, f"cannot read Parquet here ({exc}); save the file as CSV") from None
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataFileError(path, f"not a readable Parquet file: {exc}") from None
    frame.columns = _column_names(path, list(frame.columns), header_line=None)
    if len(frame) == 0:
        raise DataFileError(path, "empty file: no rows")
    return Table(path, frame.reset_index(drop=True), np.arange(1, len(frame) + 1), header_line=None, is_csv=False)


def _read_csv(
    path: Path,
    header_names: Sequence[str] | None,
    headerless_names: Sequence[str] | None,
    keep_blank_lines: bool,
    logger: logging.Logger,
) -> Table:
    first = _csv(path, nrows=1, header=None)  # the first line as it is
    if len(first) == 0:
        raise DataFileError(path, "empty file", line=1)
    raw = ["" if pd.isna(c) else str(c) for c in first.iloc[0]]
    names = [c.strip().lower() for c in raw]
    has_header = header_names is None or any(n in header_names for n in names)
    if not has_header:
        if headerless_names is None:
            raise DataFileError(path, f"no header line naming {', '.join(header_names)}", line=1)
        if len(names) != len(headerless_names):
            raise DataFileError(
                path, f"no header line and {len(names)} columns; expected {len(headerless_names)}", line=1
            )
        frame = _csv(path, header=None, names=list(headerless_names))
        lines = np.arange(len(frame)) + 1
    else:
        _column_names(path, raw, header_line=1)  # pandas would rename a repeated name: check the raw line
        frame = _csv(path, header=0)
        frame.columns = _column_names(path, list(frame.columns), header_line=1)
        lines = np.arange(len(frame)) + 2  # blank lines are read as rows, so this stays exact
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took the first cells as an index
        raise DataFileError(path, "malformed row: more cells than the header has names", line=int(lines[0]))
    if not keep_blank_lines:
        blank = _blank_rows(frame)
        if blank.any():
            logger.warning(
                "%s: skipped %d blank lines (first at line %d)", path, int(blank.sum()), int(lines[blank][0])
            )
            frame, lines = frame.loc[~blank].reset_index(drop=True), lines[~blank]
    if len(frame) == 0:
        raise DataFileError(path, "empty file: a header but no data rows", line=2)
    return Table(path, frame, lines, header_line=1 if has_header else None, is_csv=True)


def _csv(path: Path, **kw: Any) -> pd.DataFrame:
    """pd.read_csv with the options of the module doc; its failures become located `DataFileError`s."""
    try:
        return pd.read_csv(path, **_CSV_OPTIONS, **kw)
    except pd.errors.EmptyDataError:
        raise DataFileError(path, "empty file", line=1) from None
    except pd.errors.ParserError as exc:  # a ragged row; pandas names its line ("... in line N, saw M")
        match = re.search(r"line (\d+)", str(exc))
        raise DataFileError(path, f"malformed row: {exc}", line=int(match.group(1)) if match else None) from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not a UTF-8 text file: {exc}") from None


def _column_names(path: Path, raw: list, header_line: int | None) -> list[str]:
    """Stripped, lower-cased names; a name that appears twice is an error (empty names aside: trailing commas)."""
    names = [str(c).strip().lower() for c in raw]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise DataFileError(path, f"column '{name}' appears twice", line=header_line, column=name)
        seen.add(name)
    return names


def _blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """bool [rows]: blank lines (every cell empty). Only rows with an empty first cell are inspected."""
    first = frame.iloc[:, 0]
    maybe = (first.isna() | (first == "")).to_numpy()  # read with skipinitialspace: "  " reads as empty
    blank = np.zeros(len(frame), dtype=bool)
    if maybe.any():
        rest = frame.loc[maybe].fillna("").astype(str)
        blank[maybe] = rest.apply(lambda c: c.str.strip() == "").all(axis=1).to_numpy()
    return blank
