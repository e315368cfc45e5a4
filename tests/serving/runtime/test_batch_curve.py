"""Batching where it pays: the measured rows -> seconds curve decides which requests are queued."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from serving.contracts.errors import Overloaded
from serving.runtime.backends.embedded import EmbeddedBackend
from serving.runtime.batch_curve import BatchCurve, measure_curve, shorten, tile_rows
from serving.runtime.batching import BatchingBackend, BatchParams, MicroBatcher
from serving.runtime.cpus import run_inline, usable_cpus
from tests.serving import gateway_helpers as g

pytestmark = pytest.mark.timeout(60)


def test_curve_interpolates_on_log_axes_and_grows_linearly_past_the_last_size():
    c = BatchCurve(rows=(1, 4), seconds=(1.0, 2.0))
    assert c.time(1) == 1.0
    assert c.time(2) == pytest.approx(2**0.5)  # halfway on log-log axes
    assert c.time(8) == pytest.approx(4.0)  # beyond the curve: in proportion to the rows
    assert c.gain(1) == pytest.approx(2 / 2**0.5)
    assert c.gain(2) == pytest.approx(2 * 2**0.5 / 2)
    assert c.gain(4) is None  # a pair past the measured sizes: no evidence either way
    assert c.describe() == {"1": 1000.0, "4": 2000.0}


def test_tile_rows_repeats_the_first_row():
    out = tile_rows({"x": np.arange(6).reshape(2, 3)}, 3)
    assert out["x"].tolist() == [[0, 1, 2]] * 3


@pytest.mark.asyncio
async def test_measure_curve_times_doubling_row_counts_up_to_the_maximum():
    seen: list[int] = []

    async def infer(feeds):
        seen.append(feeds["x"].shape[0])
        return {}

    curve = await measure_curve(infer, {"x": np.zeros((1, 2))}, max_rows=8)
    assert curve.rows == (1, 2, 4, 8)
    assert sorted(set(seen)) == [1, 2, 4, 8]
    assert all(s > 0 for s in curve.seconds)


class Counter:
    def __init__(self) -> None:
        self.calls: list[int] = []

    async def __call__(self, inputs):
        self.calls.append(inputs["x"].shape[0])
        await asyncio.sleep(0.005)
        return {"y": inputs["x"].sum(axis=1)}


def _batcher(curve: BatchCurve | None, min_gain: float = 1.15) -> tuple[MicroBatcher, Counter]:
    run = Counter()
    b = MicroBatcher(run, BatchParams(max_batch_size=16, max_delay_s=0.02, max_queue_rows=256), min_gain=min_gain)
    b.curve = curve
    return b, run


def test_pays_follows_the_curve_and_the_batch_size():
    flat = BatchCurve((1, 16), (1e-3, 1.6e-2))  # per-row cost constant: batching buys nothing
    steep = BatchCurve((1, 16), (1e-3, 2e-3))  # 16 rows cost twice one row
    assert not _batcher(flat)[0].pays(2)
    assert _batcher(steep)[0].pays(2)
    assert not _batcher(steep)[0].pays(9)  # two of them do not fit one batch
    assert _batcher(steep)[0].pays(40)  # over a batch: queued in chunks, as before
    assert _batcher(None)[0].pays(2)  # nothing measured yet: queued
    assert _batcher(BatchCurve((1,), (0.3,)))[0].pays(1)  # one slow size measured: no evidence, queued
    assert _batcher(flat, min_gain=0)[0].pays(2)  # batching forced


@pytest.mark.asyncio
async def test_requests_that_batching_would_not_speed_up_run_at_once_and_are_counted():
    class Observer:
        def __init__(self) -> None:
            self.batches: list[tuple[int, int]] = []

        def observe_batch(self, model, rows, requests, seconds):
            self.batches.append((rows, requests))

        def observe_queue(self, model, rows, waited_s=None):
            pass

    obs = Observer()
    run = Counter()
    b = MicroBatcher(run, BatchParams(16, 0.02, 256), name="m", observer=obs, min_gain=1.15)
    b.curve = BatchCurve((1, 16), (1e-3, 1.6e-2))
    b.start()
    x = [{"x": np.ones((2, 3))} for _ in range(4)]
    out = await asyncio.gather(*(b.run_now(r) for r in x))
    await b.close()
    assert run.calls == [2, 2, 2, 2]  # each alone, none queued
    assert [o["y"].tolist() for o in out] == [[3.0, 3.0]] * 4
    assert obs.batches == [(2, 1)] * 4 and b.direct_runs == 4


@pytest.mark.asyncio
async def test_batching_backend_measures_each_model_and_queues_only_where_it_pays(tmp_path: Path):
    repo = tmp_path / "repo"
    g.add_din(repo)
    backend = BatchingBackend(EmbeddedBackend(str(repo), provider="cpu"), max_delay_ms=20, min_gain=1.15)
    await backend.load()
    b = backend.batcher("din")
    assert b is not None and b.curve is not None and b.curve.rows[0] == 1
    # Force the decision both ways with a curve of our own; the answers are the model's either way.
    req = {
        "hist_item_ids": np.ones((3, 2), np.int64),
        "hist_cat_ids": np.ones((3, 2), np.int64),
        "hist_len": np.full(3, 2),
        "cand_item_ids": np.array([1, 2, 3]),
        "cand_cat_ids": np.array([1, 1, 1]),
    }
    b.curve = BatchCurve((1, 1024), (1e-3, 1.024))
    direct = await backend.infer("din", req)
    assert b.direct_runs == 1 and b.batches_run == 0
    b.curve = BatchCurve((1, 1024), (1e-3, 2e-3))
    queued = await backend.infer("din", req)
    assert b.batches_run == 1
    await backend.close()
    np.testing.assert_allclose(direct["prob"], queued["prob"], atol=1e-6)


def test_usable_cpus_reads_the_cgroup_quota(tmp_path: Path):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert usable_cpus(quota) == min(2, usable_cpus(tmp_path / "absent"))
    quota.write_text("max 100000\n")
    assert usable_cpus(quota) == usable_cpus(tmp_path / "absent")


def test_run_inline_only_on_one_cpu_without_a_gpu():
    assert run_inline("auto", on_gpu=False, cpus=1)
    assert not run_inline("auto", on_gpu=False, cpus=2)
    assert not run_inline("auto", on_gpu=True, cpus=1)
    assert run_inline("inline", on_gpu=True, cpus=8)
    assert not run_inline("thread", on_gpu=False, cpus=1)
    with pytest.raises(ValueError, match="model_calls"):
        run_inline("sometimes", on_gpu=False)


@pytest.mark.asyncio
async def test_inline_model_calls_give_the_pooled_answers(tmp_path: Path):
    repo = tmp_path / "repo"
    g.add_din(repo)
    inline = EmbeddedBackend(str(repo), provider="cpu", model_calls="inline")
    pooled = EmbeddedBackend(str(repo), provider="cpu", model_calls="thread")
    assert inline.inline and not pooled.inline
    await inline.load()
    await pooled.load()
    req = {
        "hist_item_ids": np.ones((2, 2), np.int64),
        "hist_cat_ids": np.ones((2, 2), np.int64),
        "hist_len": np.full(2, 2),
        "cand_item_ids": np.array([1, 2]),
        "cand_cat_ids": np.array([1, 1]),
    }
    a, b = await inline.infer("din", req), await pooled.infer("din", req)
    await inline.close()
    await pooled.close()
    np.testing.assert_allclose(a["prob"], b["prob"], atol=1e-7)


@pytest.mark.asyncio
async def test_requests_run_at_once_meet_the_same_queue_bound():
    b, run = _batcher(BatchCurve((1, 16), (1e-3, 1.6e-2)))
    b.start()
    results = await asyncio.gather(*(b.run_now({"x": np.ones((10, 1))}) for _ in range(30)), return_exceptions=True)
    await b.close()
    shed = [r for r in results if isinstance(r, Overloaded)]
    assert shed and len(shed) < len(results)  # 256 rows of bound: some run, the rest are shed at once
    assert len(run.calls) == len(results) - len(shed)


def test_shorten_cuts_only_the_variable_axes():
    ids = np.zeros((1, 64), np.int64)
    out = shorten({"input_ids": ids, "n": np.zeros((1, 3))}, {"input_ids": (1,)})
    assert out["input_ids"].shape == (1, 16) and out["n"].shape == (1, 3)


@pytest.mark.asyncio
async def test_a_batch_does_not_mix_lengths_that_would_be_mostly_padding():
    seen: list[tuple[int, int]] = []

    async def run(inputs):
        seen.append(inputs["ids"].shape)
        await asyncio.sleep(0.01)  # the rest queue while the first runs
        return {"y": inputs["ids"].sum(axis=1)}

    b = MicroBatcher(run, BatchParams(max_batch_size=16, max_delay_s=0.0, max_queue_rows=64))
    b.start()
    lengths = [4, 40, 4, 40, 5, 4]
    reqs = [{"ids": np.ones((1, n), np.int64)} for n in lengths]
    out = await asyncio.gather(*(b.submit(r) for r in reqs))
    await b.close()
    assert [int(o["y"][0]) for o in out] == lengths  # each answer is its own
    # queued in one turn: the four short ones together (padded to 5), the two long ones together
    assert seen == [(4, 5), (2, 40)]
