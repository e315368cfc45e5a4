"""Whether batching pays for a model, measured: its seconds per call by rows, timed at warm-up.

Batching pays where a model runs n rows in much less than n times one row's time: BERT's texts and the
TCN's series on a CPU, everything on a GPU. It barely pays for DIN's 200 rows per request on a CPU, where
the matrix products are already full, and there the queue, the merge and the split only add time. So the
batcher asks, per request: would two requests of this many rows run at least `min_gain` times faster
together than apart? The curve is timed on the model's own warm-up request (config.pbtxt), its variable
axes cut to SHORT (a customer message, a short history: warm-up requests are as long as the model allows,
where every row is so much work that batching looks useless), repeated to 1, 2, 4, ... rows, the best of
a few calls each, until a call gets slow; between measured sizes it is
interpolated on log-log axes. Where a pair of requests would go past the measured sizes there is no
evidence against batching, and the request is queued as before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np

Infer = Callable[[Mapping[str, np.ndarray]], Awaitable[object]]

SHORT = 16  # tokens / history items the curve is measured at (typical storefront requests are this short)
REPEATS = 3  # calls per size; the fastest counts (the least disturbed by the rest of the machine)
SLOWEST_CALL_S = 0.05  # stop growing the rows once one call takes this long


@dataclass(frozen=True)
class BatchCurve:
    rows: tuple[int, ...]  # ascending
    seconds: tuple[float, ...]

    def time(self, rows: int) -> float:
        """Seconds for one call of `rows` rows."""
        r, s = self.rows, self.seconds
        if rows >= r[-1]:
            return s[-1] * rows / r[-1]
        if rows <= r[0]:
            return s[0]
        i = int(np.searchsorted(r, rows))
        x0, x1, y0, y1 = math.log(r[i - 1]), math.log(r[i]), math.log(s[i - 1]), math.log(s[i])
        return math.exp(y0 + (y1 - y0) * (math.log(rows) - x0) / (x1 - x0))

    def gain(self, rows: int) -> float | None:
        """How much faster two requests of `rows` rows run as one call than as two; None past the curve."""
        if 2 * rows > self.rows[-1]:
            return None
        return 2 * self.time(rows) / self.time(2 * rows)

    def describe(self) -> dict[str, float]:
        return {str(r): round(s * 1e3, 4) for r, s in zip(self.rows, self.seconds, strict=True)}


def shorten(inputs: Mapping[str, np.ndarray], dynamic_axes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The request with each input's variable axes (`dynamic_axes`, counted with the row axis) cut to SHORT."""
    out = {}
    for name, a in inputs.items():
        cut = [slice(None)] * a.ndim
        for axis in dynamic_axes.get(name, ()):
            if axis < a.ndim:
                cut[axis] = slice(0, SHORT)
        out[name] = np.ascontiguousarray(a[tuple(cut)])
    return out


def tile_rows(inputs: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """A one-row request repeated to `rows` rows (the row axis is the first)."""
    return {k: np.ascontiguousarray(np.repeat(v[:1], rows, axis=0)) for k, v in inputs.items()}


async def measure_curve(infer: Infer, one_row: Mapping[str, np.ndarray], max_rows: int) -> BatchCurve:
    """Time `infer` on 1, 2, 4, ... up to `max_rows` rows of `one_row` (stopping early past SLOWEST_CALL_S)."""
    sizes, seconds = [], []
    rows = 1
    while rows <= max_rows:
        feeds = tile_rows(one_row, rows)
        best = math.inf
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            await infer(feeds)
            best = min(best, time.perf_counter() - t0)
            if best > SLOWEST_CALL_S:  # slow enough to know; more calls would only delay the start
                break
        sizes.append(rows)
        seconds.append(max(best, 1e-9))
        if best > SLOWEST_CALL_S:
            break
        rows *= 2
    return BatchCurve(tuple(sizes), tuple(seconds))
