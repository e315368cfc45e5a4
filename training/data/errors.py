"""The one error type for bad input files: it names the file, the line and the column."""

from __future__ import annotations

from pathlib import Path


class DataFileError(ValueError):
    def __init__(self, path: str | Path, message: str, line: int | None = None, column: str | None = None):
        self.path = str(path)
        self.line = line
        self.column = column
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
