"""Micro-batching: rows of concurrent requests for one model go to the backend as one batch.

A request hands the batcher a dict of arrays with a leading row axis (DIN: one row per candidate,
BERT: one per text). The batcher queues it, and one worker task per model takes the queued rows (up
to `max_batch_size`) as soon as the model is free: an idle model never waits for company, which only
added latency on CPU (bench/results). With `concurrency` > 1, a batch started while another runs waits
until `max_batch_size` rows are queued or the oldest has waited `max_delay_s` (Triton's dynamic batching
rule). The worker concatenates them, pads variable-length axes (history length, tokens) to the longest
in the batch with `pad_value` (0: the padding id and mask value of every model here, which the models
ignore), runs the backend once and hands each request its own slice of the outputs. A model whose outputs
have a variable axis too (the plans model's [plans, horizon, quantiles]) would hand a padded request the
padding's outputs as well, so there only requests of equal shapes share a batch (as Triton batches them).

While a batch runs, new requests keep queueing, so the next batch is fuller under load with no extra
wait when idle. The queue is bounded in rows: a request that does not fit gets `Overloaded` (HTTP 503
with Retry-After) at once rather than waiting behind an ever longer queue. A request bigger than
`max_batch_size` is split into chunks that travel like separate requests.

Batching is used where it pays: each batcher carries its model's measured rows -> seconds curve
(serving/runtime/batch_curve.py, timed after load), and a request whose rows would not run faster paired
with another (DIN's 200 candidates on a CPU) skips the queue and runs at once, still counted in the batch
metrics as a batch of one request.

`BatchingBackend` wraps any InferenceBackend with one MicroBatcher per model, so the code above it
calls `infer` and never knows whether batching happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import numpy as np

from serving.contracts.errors import Overloaded, RequestTimeout, ShuttingDown
from serving.runtime.backends.base import InferenceBackend, ModelInfo, ReloadResult
from serving.runtime.backends.repository import warmup_inputs
from serving.runtime.batch_curve import BatchCurve, measure_curve, shorten

log = logging.getLogger("serving.runtime.batching")

Arrays = dict[str, np.ndarray]
RunBatch = Callable[[Arrays], Awaitable[Arrays]]


class BatchObserver(Protocol):
    def observe_batch(self, model: str, rows: int, requests: int, seconds: float) -> None: ...
    def observe_queue(self, model: str, rows: int, waited_s: float | None = None) -> None: ...


def _leading(a: np.ndarray) -> int:
    shape = a.shape if isinstance(a, np.ndarray) else np.shape(a)  # np.shape is slow on arrays: the hot path
    return shape[0] if shape else -1


def count_rows(inputs: Mapping[str, np.ndarray]) -> int:
    """Rows of a request: the common length of every array's first axis."""
    lengths = {_leading(a) for a in inputs.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise ValueError(f"every input needs the same leading (row) axis, got lengths {sorted(lengths)}")
    rows = lengths.pop()
    if rows < 1:
        raise ValueError("a request needs at least one row")
    return rows


def merge_rows(parts: Sequence[Mapping[str, np.ndarray]], pad_value: float = 0) -> tuple[Arrays, np.ndarray]:
    """Concatenate requests along the row axis, padding every other axis to the batch's longest.

    -> (batched arrays, offsets [n_parts + 1]): request i owns rows offsets[i]:offsets[i + 1].
    """
    if len(parts) == 1:  # a batch of one request (the idle case): nothing to concatenate or pad
        return dict(parts[0]), np.array([0, count_rows(parts[0])], dtype=np.int64)
    names = list(parts[0])
    if any(list(p) != names for p in parts[1:]):
        raise ValueError("requests in one batch must have the same input names")
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([count_rows(p) for p in parts], out=offsets[1:])
    merged: Arrays = {}
    for name in names:
        arrays = [np.asarray(p[name]) for p in parts]
        if len(arrays) == 1:
            merged[name] = arrays[0]
            continue
        shapes = {a.shape[1:] for a in arrays}
        if len(shapes) == 1:
            merged[name] = np.concatenate(arrays)
            continue
        if len({len(s) for s in shapes}) != 1:
            raise ValueError(f"{name}: requests disagree on the rank ({sorted(shapes)})")
        target = tuple(max(s[i] for s in shapes) for i in range(arrays[0].ndim - 1))
        buf = np.full((int(offsets[-1]), *target), pad_value, dtype=np.result_type(*arrays))
        for a, start in zip(arrays, offsets[:-1], strict=False):  # one copy per request, not per row
            buf[(slice(int(start), int(start) + a.shape[0]), *(slice(0, d) for d in a.shape[1:]))] = a
        merged[name] = buf
    return merged, offsets


def split_rows(outputs: Mapping[str, np.ndarray], offsets: np.ndarray) -> list[Arrays]:
    total = int(offsets[-1])
    bad = [k for k, v in outputs.items() if np.ndim(v) == 0 or v.shape[0] != total]
    if bad:
        raise ValueError(f"outputs {bad} do not have one row per input row ({total})")
    if offsets.shape[0] == 2:  # one request: all of it
        return [dict(outputs)]
    return [{k: v[a:b] for k, v in outputs.items()} for a, b in itertools.pairwise(offsets.tolist())]


@dataclass(eq=False)
class _Pending:
    inputs: Mapping[str, np.ndarray]
    rows: int
    future: asyncio.Future[Arrays]
    enqueued: float = field(default_factory=time.perf_counter)
    width: int = 1  # cells per row along the padded axes (tokens, history length): what padding multiplies
    shapes: tuple[tuple[int, ...], ...] = ()  # every input's shape past the row axis (batches that never pad)

    def __post_init__(self) -> None:
        self.shapes = tuple(a.shape[1:] for a in self.inputs.values())
        self.width = max((math.prod(s) for s in self.shapes if s), default=1)  # math.prod: np.prod costs µs


# A batch may spend at most this share of its cells on padding: a long text padded with short ones runs the
# short ones at the long one's cost (attention masks save no compute), which can undo what batching saves.
MAX_PADDING = 0.2


@dataclass(frozen=True)
class BatchParams:
    max_batch_size: int
    max_delay_s: float
    max_queue_rows: int
    concurrency: int = 1
    pad: bool = True  # False: only requests of equal shapes share a batch (outputs with a variable axis)


class MicroBatcher:
    """Coalesces rows of concurrent `submit` calls into batches for one `run` function (one model)."""

    def __init__(
        self,
        run: RunBatch,
        params: BatchParams,
        *,
        name: str = "model",
        pad_value: float = 0,
        observer: BatchObserver | None = None,
        retry_after: int = 1,
        min_gain: float = 0.0,
    ):
        if params.max_batch_size < 1 or params.max_queue_rows < params.max_batch_size:
            raise ValueError(f"need max_batch_size >= 1 and max_queue_rows >= max_batch_size, got {params}")
        self.run, self.params, self.name = run, params, name
        self.pad_value, self.observer, self.retry_after = pad_value, observer, retry_after
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._direct_rows = 0  # rows of requests running outside the queue (batching would not pay)
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(params.concurrency)
        self._active = 0  # batches of this model running now
        self._running: set[asyncio.Task] = set()
        self._closing = False
        self._task: asyncio.Task | None = None
        self.batches_run = 0
        self.min_gain = min_gain
        self._curve: BatchCurve | None = None  # until measured, every request is queued
        self._pays: dict[int, bool] = {}  # decision per row count, for the current curve
        self.direct_runs = 0

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def submit(
        self, inputs: Mapping[str, np.ndarray], timeout: float | None = None, rows: int | None = None
    ) -> Arrays:
        """Queue a request's rows; -> its rows of every output. Overloaded when the queue is full."""
        if self._closing:
            raise ShuttingDown(f"{self.name}: shutting down", retry_after=self.retry_after)
        rows = count_rows(inputs) if rows is None else rows
        self._admit(rows)
        step = self.params.max_batch_size
        chunks = (
            [inputs]
            if rows <= step
            else [{k: v[s : s + step] for k, v in inputs.items()} for s in range(0, rows, step)]
        )
        loop = asyncio.get_running_loop()
        pending = [_Pending(c, min(step, rows - i * step), loop.create_future()) for i, c in enumerate(chunks)]
        self._queue.extend(pending)
        self._queued_rows += rows
        self._observe_queue()
        self._wakeup.set()
        futures = [p.future for p in pending]
        try:
            # One chunk (nearly every request) awaits its future itself: gather would add a future and a loop turn.
            waiter = futures[0] if len(futures) == 1 else asyncio.gather(*futures)
            if timeout is None:
                parts = await waiter
            else:
                async with asyncio.timeout(timeout):
                    parts = await waiter
        except TimeoutError:
            raise RequestTimeout(f"{self.name}: no answer within {timeout:.3g} s") from None
        finally:
            for f in futures:  # abandoned (timeout / client gone): the worker skips cancelled rows
                f.cancel()
        if len(futures) == 1:
            return parts
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _admit(self, rows: int) -> None:
        """Overloaded when the rows would not fit the bound (queued rows and rows running outside the queue)."""
        waiting = self._queued_rows + self._direct_rows
        if waiting + rows > self.params.max_queue_rows:
            raise Overloaded(
                f"{self.name}: queue full ({waiting} rows waiting, bound {self.params.max_queue_rows})",
                retry_after=self.retry_after,
            )

    @property
    def curve(self) -> BatchCurve | None:
        return self._curve

    @curve.setter
    def curve(self, curve: BatchCurve | None) -> None:
        self._curve, self._pays = curve, {}

    def pays(self, rows: int) -> bool:
        """Whether a request of `rows` rows should be queued: its model runs two such requests at least
        `min_gain` times faster together (measured curve), or nothing is measured yet."""
        known = self._pays.get(rows)
        if known is None:
            known = self._pays[rows] = self._decide(rows)
        return known

    def _decide(self, rows: int) -> bool:
        c, size = self._curve, self.params.max_batch_size
        if c is None or self.min_gain <= 0 or rows > size:  # over a batch: queued in chunks
            return True
        if 2 * rows > size:  # two of them do not fit one batch
            return False
        gain = c.gain(rows)
        return gain is None or gain >= self.min_gain

    async def run_now(self, inputs: Mapping[str, np.ndarray], rows: int | None = None) -> Arrays:
        """A request that batching would not speed up: run at once, counted as a batch of one request."""
        if self._closing:
            raise ShuttingDown(f"{self.name}: shutting down", retry_after=self.retry_after)
        rows = count_rows(inputs) if rows is None else rows
        self._admit(rows)  # the same bound as queued requests: load is shed the same way
        self._direct_rows += rows
        t0 = time.perf_counter()
        try:
            outputs = await self.run(inputs)
        finally:
            self._direct_rows -= rows
        self.direct_runs += 1
        if self.observer is not None:
            self.observer.observe_batch(self.name, rows, 1, time.perf_counter() - t0)
        return outputs

    async def close(self) -> None:
        """Stop taking requests, run what is queued, wait for running batches."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    # ---- worker

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._slots.acquire()  # while every slot is busy, requests keep queueing: fuller batches
            try:
                await self._fill()
                batch = self._take()
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            self._active += 1
            if self.params.concurrency == 1:  # nothing else could start meanwhile: run it here, a task fewer
                await self._run(batch)
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _fill(self) -> None:
        """When no batch of this model is running, dispatch now: waiting on an idle model only adds latency
        (requests that arrive in the same event-loop turn still join). While one runs (concurrency > 1),
        wait until a full batch is queued or the oldest request has waited max_delay, as Triton does."""
        await asyncio.sleep(0)
        if self._active == 0:
            return
        deadline = self._queue[0].enqueued + self.params.max_delay_s
        while self._queued_rows < self.params.max_batch_size and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _take(self) -> list[_Pending]:
        """The oldest request and, in queue order, those that fit the batch without too much padding; the rest
        stay queued in order for the next batch."""
        batch: list[_Pending] = []
        kept: deque[_Pending] = deque()
        rows, cells, width, now = 0, 0, 0, time.perf_counter()
        while self._queue:
            p = self._queue.popleft()
            if p.future.done():  # its caller gave up; do not spend model time on it
                self._queued_rows -= p.rows
                continue
            if rows + p.rows > self.params.max_batch_size:
                self._queue.appendleft(p)
                break
            wide = max(width, p.width)
            if batch and not self.params.pad and p.shapes != batch[0].shapes:
                kept.append(p)  # another shape, and padding would show in the outputs: the next batch
                continue
            if batch and wide * (rows + p.rows) > (cells + p.rows * p.width) / (1 - MAX_PADDING):
                kept.append(p)  # another length: the next batch
                continue
            batch.append(p)
            rows, cells, width = rows + p.rows, cells + p.rows * p.width, wide
            self._queued_rows -= p.rows
            if self.observer is not None:
                self.observer.observe_queue(self.name, self._queued_rows, now - p.enqueued)
        self._queue.extendleft(reversed(kept))
        self._observe_queue()
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        t0 = time.perf_counter()
        try:
            merged, offsets = merge_rows([p.inputs for p in batch], self.pad_value)
            outputs = await self.run(merged)
            parts = split_rows(outputs, offsets)
        except Exception as exc:  # every request of the batch gets the error; the worker lives on
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            self._active -= 1
            self._slots.release()
        self.batches_run += 1
        if self.observer is not None:
            self.observer.observe_batch(self.name, int(offsets[-1]), len(batch), time.perf_counter() - t0)
        for p, part in zip(batch, parts, strict=True):
            if not p.future.done():
                p.future.set_result(part)

    def _observe_queue(self) -> None:
        if self.observer is not None:
            self.observer.observe_queue(self.name, self._queued_rows)


class BatchingBackend(InferenceBackend):
    """An InferenceBackend with a MicroBatcher in front of every batchable model of the `inner` one."""

    def __init__(
        self,
        inner: InferenceBackend,
        *,
        max_batch_size: int | None = None,
        max_delay_ms: float | None = None,
        concurrency: int = 1,
        queue_max_batches: int = 16,
        observer: BatchObserver | None = None,
        retry_after: int = 1,
        min_gain: float = 0.0,
    ):
        self.inner = inner
        self.min_gain = min_gain
        self.kind = inner.kind  # type: ignore[misc]
        self._max_batch, self._max_delay_ms = max_batch_size, max_delay_ms
        self._concurrency, self._queue_batches = concurrency, queue_max_batches
        self._observer, self._retry_after = observer, retry_after
        self._batchers: dict[str, MicroBatcher] = {}
        self._retiring: set[asyncio.Task] = set()
        self._measured: dict[str, tuple[int, str | None]] = {}  # model -> (version, sha256) its curve is of

    def params_for(self, info: ModelInfo) -> BatchParams:
        size = min(self._max_batch or info.max_batch_size, info.max_batch_size)
        delay = self._max_delay_ms / 1e3 if self._max_delay_ms is not None else info.max_queue_delay_us / 1e6
        pad = not any(t.dynamic_axes for t in info.outputs)  # a padded axis that reaches the outputs is never padded
        return BatchParams(size, delay, size * self._queue_batches, self._concurrency, pad)

    def batcher(self, model: str) -> MicroBatcher | None:
        return self._batchers.get(model)

    def _sync(self) -> None:
        """One batcher per batchable model; a model whose batch settings changed gets a new one, and the old
        one finishes its queue in the background (its rows run on whatever version is serving by then)."""
        fresh: dict[str, MicroBatcher] = {}
        for name, info in self.inner.models().items():
            if info.max_batch_size <= 0:
                continue
            params = self.params_for(info)
            current = self._batchers.get(name)
            if current is not None and current.params == params:
                fresh[name] = current
                continue
            self._measured.pop(name, None)  # a new batcher: its curve is measured again
            b = MicroBatcher(
                partial(self.inner.infer, name),
                params,
                name=name,
                observer=self._observer,
                retry_after=self._retry_after,
                min_gain=self.min_gain,
            )
            b.start()
            fresh[name] = b
        retired = [b for n, b in self._batchers.items() if fresh.get(n) is not b]
        self._batchers = fresh
        for b in retired:
            task = asyncio.get_running_loop().create_task(b.close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _measure(self) -> None:
        """The rows -> seconds curve of every model version not measured yet, on its warm-up request (requests
        arriving meanwhile are queued, as before any curve)."""
        if self.min_gain <= 0:
            return
        for name, b in list(self._batchers.items()):
            info = self.inner.models().get(name)
            if info is None or self._measured.get(name) == (info.version, info.sha256):
                continue
            try:
                short = shorten(warmup_inputs(info)[0], {t.name: t.dynamic_axes for t in info.inputs})
                curve = await measure_curve(partial(self.inner.infer, name), short, b.params.max_batch_size)
            except Exception as exc:  # a model that fails here fails its requests too; they will say why
                log.warning("%s: batch curve not measured (%s); every request is queued", name, exc)
                continue
            b.curve, self._measured[name] = curve, (info.version, info.sha256)
            log.info("%s: ms per call by rows %s", name, curve.describe())

    async def load(self, models: Sequence[str] | None = None, pins: Mapping[str, int] | None = None) -> None:
        await self.inner.load(models, pins)
        self._sync()
        await self._measure()

    async def reload(self, models: Sequence[str] | None = None, pins: Mapping[str, int] | None = None) -> ReloadResult:
        result = await self.inner.reload(models, pins)
        self._sync()  # no await between the inner swap and this: requests never see a half-swapped state
        await self._measure()
        return result

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = self._batchers.get(model)
        if b is None:  # not batchable, or not loaded (the inner backend says which)
            return await self.inner.infer(model, inputs)
        rows = count_rows(inputs)
        if not b.pays(rows):
            return await b.run_now(inputs, rows)
        return await b.submit(inputs, rows=rows)

    def models(self) -> dict[str, ModelInfo]:
        return self.inner.models()

    async def ready(self) -> bool:
        return await self.inner.ready()

    async def warmup(self, model: str) -> float:
        return await self.inner.warmup(model)

    def queue_rows(self) -> dict[str, int]:
        return {n: b.queued_rows for n, b in self._batchers.items()}

    async def close(self) -> None:
        batchers, self._batchers = list(self._batchers.values()), {}
        await asyncio.gather(*(b.close() for b in batchers), *self._retiring, return_exceptions=True)
        await self.inner.close()
