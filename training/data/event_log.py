"""Reader of the gateway's durable event log (JSON Lines; the format is `serving/contracts/events.py`) -> `Table`.

`read_event_log(path)`: one `.jsonl` file, or a folder holding the rotated `events-*.jsonl` files of one or
more gateway processes (read in name order; the loader sorts events by user and time anyway). Each line is
an object with `user_id, item_id, event_type, timestamp[, request_id]` (extra keys are ignored), so the
behaviour loader applies its usual checks and its errors name the file and the line. A line that is not a
JSON object (a gateway killed in the middle of a write leaves a cut last line) is dropped and counted in a
warning, or is an error with `strict=True`; blank lines are skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from serving.contracts.events import LOG_GLOB, LOG_SUFFIX
from training.data.errors import DataFileError
from training.data.table_io import Table

log = logging.getLogger("training.data.behavior_io")


def is_event_log(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix.lower() == LOG_SUFFIX or (path.is_dir() and any(path.glob(LOG_GLOB)))


def read_event_log(path: str | Path, strict: bool = False) -> Table:
    path = Path(path)
    if not path.exists():
        raise DataFileError(path, "file not found")
    if not path.is_dir():
        return _read_file(path, strict)
    files = sorted(path.glob(LOG_GLOB))
    if not files:
        raise DataFileError(path, f"no event log files ({LOG_GLOB}) in this folder")
    return _LogTable(path, [_read_file(f, strict) for f in files])


def _read_file(path: Path, strict: bool) -> Table:
    rows: list[dict] = []
    lines: list[int] = []
    bad: list[int] = []
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                if strict:
                    raise DataFileError(path, "not a JSON object", line=number)
                bad.append(number)
                continue
            rows.append(record)
            lines.append(number)
    if bad:
        log.warning("%s: dropped %d lines that are not JSON objects (first at line %d)", path, len(bad), bad[0])
    if not rows:
        raise DataFileError(path, "no events in this file")
    frame = pd.DataFrame.from_records(rows)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return Table(path, frame, np.asarray(lines, dtype=np.int64), header_line=None, is_csv=False)


class _LogTable(Table):
    """Several log files as one table; an error names the file and the line of its row."""

    def __init__(self, folder: Path, parts: list[Table]):
        frame = pd.concat([p.frame for p in parts], ignore_index=True)
        super().__init__(folder, frame, np.concatenate([p.lines for p in parts]), header_line=None, is_csv=False)
        self._paths = [p.path for p in parts]
        self._file = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts)])

    def error(self, message: str, row: int | None = None, column: str | None = None) -> DataFileError:
        if row is None:
            return DataFileError(self.path, message, column=column)
        return DataFileError(self._paths[int(self._file[row])], message, line=int(self.lines[row]), column=column)

    def keep(self, mask: np.ndarray) -> None:
        super().keep(mask)
        self._file = self._file[mask]
