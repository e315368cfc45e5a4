"""Micro-batcher: concurrent requests give the one-by-one results, in fewer model calls; bounded queue."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.contracts.errors import Overloaded, RequestTimeout, ShuttingDown
from serving.contracts.model_specs import TCN_PLANS
from serving.runtime.backends.embedded import EmbeddedBackend
from serving.runtime.batching import BatchingBackend, BatchParams, MicroBatcher, merge_rows, split_rows
from tests.serving import gateway_helpers as g
from tests.serving.price import helpers as ph

pytestmark = pytest.mark.timeout(60)


def test_merge_pads_variable_axes_and_split_returns_each_request():
    a = {"x": np.ones((2, 3), np.float32), "n": np.array([3, 3])}
    b = {"x": np.full((1, 5), 2, np.float32), "n": np.array([5])}
    merged, offsets = merge_rows([a, b])
    assert merged["x"].shape == (3, 5)
    np.testing.assert_array_equal(merged["x"][0], [1, 1, 1, 0, 0])  # padded with 0 to the longest
    np.testing.assert_array_equal(merged["x"][2], [2, 2, 2, 2, 2])
    assert offsets.tolist() == [0, 2, 3]
    parts = split_rows({"y": np.arange(3)}, offsets)
    assert [p["y"].tolist() for p in parts] == [[0, 1], [2]]


def test_merge_rejects_inconsistent_requests():
    with pytest.raises(ValueError, match="same input names"):
        merge_rows([{"x": np.ones((1, 2))}, {"z": np.ones((1, 2))}])
    with pytest.raises(ValueError, match="leading"):
        merge_rows([{"x": np.ones((2, 2)), "n": np.ones(3)}])


class Recorder:
    """A run function that records batch sizes; y = row sums (padding-invariant)."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[int] = []
        self.delay = delay

    async def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append(inputs["x"].shape[0])
        if self.delay:
            await asyncio.sleep(self.delay)
        return {"y": inputs["x"].sum(axis=1)}


def _requests(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.random((int(rng.integers(1, 4)), int(rng.integers(1, 7)))).astype(np.float32)} for _ in range(n)]


@pytest.mark.asyncio
async def test_concurrent_equals_one_by_one_with_fewer_calls():
    run = Recorder()
    batcher = MicroBatcher(run, BatchParams(max_batch_size=16, max_delay_s=0.02, max_queue_rows=256), name="t")
    batcher.start()
    reqs = _requests(24)
    together = await asyncio.gather(*(batcher.submit(r) for r in reqs))
    calls_together = len(run.calls)
    alone = [await batcher.submit(r) for r in reqs]
    await batcher.close()
    for t, a, r in zip(together, alone, reqs, strict=True):
        np.testing.assert_allclose(t["y"], r["x"].sum(axis=1), rtol=1e-6)
        np.testing.assert_allclose(t["y"], a["y"], rtol=1e-6)
    assert calls_together < len(reqs) / 2, run.calls  # batching happened
    assert max(run.calls) <= 16


@pytest.mark.asyncio
async def test_request_larger_than_a_batch_is_split_and_reassembled():
    run = Recorder()
    batcher = MicroBatcher(run, BatchParams(max_batch_size=4, max_delay_s=0.0, max_queue_rows=64))
    batcher.start()
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    out = await batcher.submit({"x": x})
    await batcher.close()
    np.testing.assert_allclose(out["y"], x.sum(axis=1))
    assert max(run.calls) <= 4 and sum(run.calls) == 10


@pytest.mark.asyncio
async def test_full_queue_is_overloaded_not_unbounded():
    run = Recorder(delay=0.2)
    batcher = MicroBatcher(run, BatchParams(max_batch_size=2, max_delay_s=0.0, max_queue_rows=4), retry_after=3)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit({"x": np.ones((2, 1), np.float32)}))
    await asyncio.sleep(0.05)  # the worker took it; it now runs for 0.2 s
    queued = [asyncio.ensure_future(batcher.submit({"x": np.ones((2, 1), np.float32)})) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await batcher.submit({"x": np.ones((1, 1), np.float32)})
    assert info.value.retry_after == 3 and info.value.status == 503
    results = await asyncio.gather(first, *queued)
    assert all(r["y"].tolist() == [1.0, 1.0] for r in results)
    await batcher.close()


@pytest.mark.asyncio
async def test_timeout_abandons_rows_without_running_them():
    run = Recorder(delay=0.3)
    batcher = MicroBatcher(run, BatchParams(max_batch_size=1, max_delay_s=0.0, max_queue_rows=8))
    batcher.start()
    busy = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1), np.float32)}))
    await asyncio.sleep(0.02)
    with pytest.raises(RequestTimeout):
        await batcher.submit({"x": np.full((1, 1), 7, np.float32)}, timeout=0.05)
    await busy
    await batcher.close()
    assert run.calls == [1]  # the timed-out request never reached the model


@pytest.mark.asyncio
async def test_close_drains_queue_and_then_refuses():
    run = Recorder(delay=0.05)
    batcher = MicroBatcher(run, BatchParams(max_batch_size=2, max_delay_s=0.5, max_queue_rows=16))
    batcher.start()
    pending = [asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2), np.float32)})) for _ in range(5)]
    await asyncio.sleep(0)
    await batcher.close()  # does not wait the 0.5 s delay: closing flushes at once
    assert all(p.done() and p.result()["y"].tolist() == [2.0] for p in pending)
    with pytest.raises(ShuttingDown):
        await batcher.submit({"x": np.ones((1, 2), np.float32)})


@pytest.mark.asyncio
async def test_model_error_reaches_every_request_of_the_batch_and_worker_survives():
    calls = 0

    async def flaky(inputs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return {"y": inputs["x"].sum(axis=1)}

    batcher = MicroBatcher(flaky, BatchParams(max_batch_size=8, max_delay_s=0.02, max_queue_rows=64))
    batcher.start()
    results = await asyncio.gather(*(batcher.submit({"x": np.ones((1, 1))}) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert (await batcher.submit({"x": np.ones((1, 1))}))["y"].tolist() == [1.0]
    await batcher.close()


@pytest.mark.asyncio
async def test_batching_backend_over_onnx_runtime_matches_unbatched(tmp_path):
    """Real sessions: DIN rows of requests with different history lengths, padded together, equal solo runs."""
    repo = tmp_path / "repo"
    g.add_din(repo)
    inner = EmbeddedBackend(str(repo), provider="cpu")
    backend = BatchingBackend(inner, max_delay_ms=20)
    await backend.load()
    rng = np.random.default_rng(0)
    reqs = []
    for _ in range(12):
        n, length = int(rng.integers(1, 6)), int(rng.integers(0, g.MAX_HIST + 1))
        hist = np.zeros((n, max(length, 1)), np.int64)
        hist[:, :length] = rng.integers(1, g.N_ITEMS + 1, length)
        reqs.append(
            {
                "hist_item_ids": hist,
                "hist_cat_ids": np.where(hist > 0, 1, 0),
                "hist_len": np.full(n, length),
                "cand_item_ids": rng.integers(1, g.N_ITEMS + 1, n),
                "cand_cat_ids": rng.integers(1, g.N_CATS + 1, n),
            }
        )
    together = await asyncio.gather(*(backend.infer("din", r) for r in reqs))
    alone = [await inner.infer("din", r) for r in reqs]
    batches = backend.batcher("din").batches_run
    await backend.close()
    for t, a in zip(together, alone, strict=True):
        np.testing.assert_allclose(t["prob"], a["prob"], atol=1e-6)
        np.testing.assert_allclose(t["logit"], a["logit"], atol=1e-5)
    assert batches < len(reqs)


@pytest.mark.asyncio
async def test_requests_with_other_plan_counts_are_never_padded_together(tmp_path):
    """Outputs with a variable axis (the plans model's [plans, H, Q]): padding would hand each request the padded
    plans' answers too, so only requests of equal shapes share a batch, and each gets exactly its own plans."""
    repo = tmp_path / "repo"
    ph.add_price_tcn_plans(repo)
    inner = EmbeddedBackend(str(repo), provider="cpu")
    backend = BatchingBackend(inner, max_delay_ms=20)
    await backend.load()
    assert not backend.batcher("tcn_plans").params.pad
    rng = np.random.default_rng(0)
    counts = (3, 5, 3, 7, 5, 3)
    reqs = [TCN_PLANS.example_inputs(ph.tcn_config(), 1, rng, length=k) for k in counts]
    together = await asyncio.gather(*(backend.infer("tcn_plans", r) for r in reqs))
    alone = [await inner.infer("tcn_plans", r) for r in reqs]
    batches = backend.batcher("tcn_plans").batches_run
    await backend.close()
    for t, a, k in zip(together, alone, counts, strict=True):
        assert t["quantiles"].shape == (1, k, ph.H, 3) and t["mean"].shape == (1, k, ph.H)
        np.testing.assert_allclose(t["quantiles"], a["quantiles"], rtol=1e-6)
    assert batches == len(set(counts))  # requests of equal shapes still shared a batch
