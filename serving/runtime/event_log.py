"""The durable event log: every accepted event, one JSON line each, in size-rotated files (serving/contracts/events.py).

Accepting an event appends its line to an in-memory buffer (no I/O on the request path); the buffer is
written out and fsync'ed every SERVING_EVENT_LOG_FLUSH_S, when it passes FLUSH_BYTES, on reload and on
shutdown (Runtime.stop, which SIGTERM reaches through the drain). So SIGTERM loses nothing; a hard kill loses
at most the last flush interval. Files rotate past SERVING_EVENT_LOG_MAX_BYTES. A failed write (disk full)
keeps the lines for the next try; past MAX_PENDING_BYTES unwritten, new events are refused with 503 rather
than accepted and lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from serving.contracts.errors import Unavailable
from serving.contracts.events import LOG_PREFIX, LOG_SUFFIX

log = logging.getLogger("serving.events")

FLUSH_BYTES = 1 << 20  # write early past this much buffered
MAX_PENDING_BYTES = 64 << 20


class EventLog:
    def __init__(self, folder: Path, max_bytes: int = 64 << 20, flush_s: float = 1.0):
        self.folder, self.max_bytes, self.flush_s = Path(folder), max_bytes, flush_s
        self._pending: list[bytes] = []
        self._pending_bytes = self._pending_lines = 0
        self._file: IO[bytes] | None = None
        self._size = self._seq = 0
        self._stem = ""
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task | None = None
        self._early: asyncio.Task | None = None
        self.written = 0  # lines on disk so far
        self.on_written: Any = None  # callable(lines: int), e.g. a metric

    # ---- request path

    def ensure_room(self) -> None:
        """Raise Unavailable (503) when the disk has refused too much already: refuse events rather than lose them."""
        if self._pending_bytes > MAX_PENDING_BYTES:
            raise Unavailable("event log cannot be written", retry_after=5, internal=f"{self.folder}: writes failing")

    def write(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Buffer the records' lines; -> how many."""
        self.ensure_room()
        chunk = b"".join(orjson.dumps(r) + b"\n" for r in records)
        lines = chunk.count(b"\n")
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        self._pending_lines += lines
        if self._pending_bytes >= FLUSH_BYTES and (self._early is None or self._early.done()):
            self._early = asyncio.get_running_loop().create_task(self.flush())
        return lines

    @property
    def pending(self) -> int:
        return self._pending_lines

    # ---- life cycle

    async def start(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()

    async def flush(self) -> int:
        """Write out what is buffered; -> lines written. A failed write is logged and its lines stay buffered."""
        async with self._lock:
            if not self._pending:
                return 0
            chunks, lines = self._pending, self._pending_lines
            self._pending, self._pending_bytes, self._pending_lines = [], 0, 0
            data = b"".join(chunks)
            try:
                await asyncio.to_thread(self._append, data)
            except OSError as exc:
                self._pending.insert(0, data)  # kept, in order, for the next try
                self._pending_bytes += len(data)
                self._pending_lines += lines
                log.error("event log: %d events not written to %s yet: %s", self._pending_lines, self.folder, exc)
                return 0
            self.written += lines
            if self.on_written is not None:
                self.on_written(lines)
            return lines

    async def close(self) -> None:
        """Stop the timer, write out everything, close the file (SIGTERM and shutdown come here)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()
        if self._pending_lines:
            log.error("event log: %d events could not be written to %s and are lost", self._pending_lines, self.folder)
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
            self._file = None

    # ---- files (in a worker thread, one at a time under the lock)

    def _append(self, data: bytes) -> None:
        if self._file is None or (self._size and self._size + len(data) > self.max_bytes):
            self._rotate()
        assert self._file is not None
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._size += len(data)

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
        if not self._stem:  # one stem per process life: files of several processes never collide
            started = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:32]
            self._stem = f"{LOG_PREFIX}{started}-{host}-{os.getpid()}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = self.folder / f"{self._stem}-{self._seq:04d}{LOG_SUFFIX}"
        self._file = path.open("ab")
        self._size = path.stat().st_size
        log.info("event log: writing %s", path)
