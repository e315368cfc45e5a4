"""The shop's ids and the models' indices: one convention for training, export and serving.

Models see dense indices shifted by ID_OFFSET, so 0 is padding / unknown. `IdMap` translates a whole
request's ids at once (sorted keys + searchsorted, no per-id Python work beyond building the array).
numpy only: training imports ID_OFFSET from here too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.contracts.errors import InvalidInput

ID_OFFSET = 1  # model id = index + 1; 0 = padding / unknown


class IdMap:
    """Shop ids (all integers, or all strings) <-> model indices 0..n-1."""

    def __init__(self, ids: np.ndarray):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError("ids must be one-dimensional")
        self.is_int = ids.dtype.kind in "iu"
        self._ids = ids.astype(np.int64) if self.is_int else ids.astype(str)
        self._order = np.argsort(self._ids, kind="stable")
        self._sorted = self._ids[self._order]
        if self._sorted.size > 1 and np.any(self._sorted[1:] == self._sorted[:-1]):
            raise ValueError("ids must be unique")

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def _keys(self, values: Sequence[int | str]) -> tuple[np.ndarray, np.ndarray]:
        """Request ids as the map's key type, and which of them could be converted at all."""
        arr = np.asarray(values)  # a mixed int/str list arrives as strings, which is what the maps compare
        if self.is_int and arr.dtype.kind in "iu":
            return arr.astype(np.int64), np.ones(arr.shape[0], dtype=bool)
        text = arr.astype(str)
        if not self.is_int:
            return text, np.ones(arr.shape[0], dtype=bool)
        # An integer catalogue also answers to "123"; anything else cannot name one of its items.
        # isdigit() is also true for "²" or "٣", which int() refuses: only ASCII digits (bytes == characters).
        length = np.char.str_len(text)
        ascii_only = np.char.str_len(np.char.encode(text, "utf-8")) == length
        digits = np.char.isdigit(text) & ascii_only & (length <= 18)
        keys = np.zeros(arr.shape[0], dtype=np.int64)
        keys[digits] = text[digits].astype(np.int64)
        return keys, digits

    def lookup(self, values: Sequence[int | str]) -> np.ndarray:
        """-> int64 model indices, -1 where the id is unknown."""
        if len(values) == 0 or len(self) == 0:
            return np.full(len(values), -1, dtype=np.int64)
        keys, ok = self._keys(values)
        pos = np.clip(np.searchsorted(self._sorted, keys), 0, len(self) - 1)
        hit = ok & (self._sorted[pos] == keys)
        return np.where(hit, self._order[pos], -1).astype(np.int64)

    def require(self, values: Sequence[int | str], field: str) -> np.ndarray:
        """lookup, with a 422 naming the first unknown id's position."""
        index = self.lookup(values)
        unknown = np.flatnonzero(index < 0)
        if unknown.size:
            i = int(unknown[0])
            more = f" (and {unknown.size - 1} more)" if unknown.size > 1 else ""
            raise InvalidInput([field, i], f"unknown id {values[i]!r}{more}", "unknown_id")
        return index

    def known(self, values: Sequence[int | str], field: str) -> tuple[np.ndarray, int]:
        """-> (indices of the ids this map knows, in request order; how many it does not know). An item added
        since the export is not an error; an id this catalogue can never hold (text other than digits in an
        integer catalogue) is a 422 naming its position."""
        if len(values) == 0:
            return np.zeros(0, dtype=np.int64), 0
        i = self.malformed(values)
        if i is not None:
            raise InvalidInput([field, i], f"malformed id {values[i]!r}: this catalogue's ids are integers")
        index = self.lookup(values)
        keep = index >= 0
        return index[keep], int(keep.size - np.count_nonzero(keep))

    def malformed(self, values: Sequence[int | str]) -> int | None:
        """Position of the first id this map can never hold (text other than digits in an integer catalogue)."""
        if not self.is_int or len(values) == 0:
            return None
        _, ok = self._keys(values)
        return None if ok.all() else int(np.argmin(ok))

    def to_shop(self, index: np.ndarray) -> list[int | str]:
        return self._ids[np.asarray(index, dtype=np.int64)].tolist()
