"""serving.runtime.backends.triton against a real pip tritonserver: the same ModelInfo and the same outputs as the
embedded backend on the same repository, clear errors for unknown models / pins / no server, and fail-fast then
self-recovery when Triton goes away and comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from serving.contracts.errors import Unavailable
from serving.runtime.backends.embedded import EmbeddedBackend
from serving.runtime.backends.triton import TritonBackend
from serving.triton import Ports, TritonServer
from serving.triton.launcher import free_port
from tests.serving.triton.helpers import require_tritonserver
from tests.serving.triton.tiny import example, write_onnx_model

pytestmark = [pytest.mark.triton, pytest.mark.asyncio]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("backend") / "model_repository"
    write_onnx_model(repo, "tiny", versions=(1, 2))
    return repo


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[TritonServer]:
    require_tritonserver()
    with TritonServer(repo, build_dir=repo.parent / "build", instance_count=1) as running:
        yield running


async def test_model_info_matches_the_embedded_backend(server: TritonServer, repo: Path) -> None:
    triton, embedded = TritonBackend(server.grpc_url), EmbeddedBackend(str(repo), warmup=False)
    await triton.load()
    await embedded.load()
    try:
        assert await triton.ready()
        got, want = triton.info("tiny"), embedded.info("tiny")
        assert got.version == want.version == 2
        assert (got.inputs, got.outputs) == (want.inputs, want.outputs)  # names, dtypes, dims and wire dims
        assert (got.max_batch_size, got.max_queue_delay_us) == (want.max_batch_size, want.max_queue_delay_us)
        assert got.max_lengths == want.max_lengths == {"hist": 5}
    finally:
        await triton.close()
        await embedded.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_outputs_equal_the_embedded_backend(server: TritonServer, repo: Path, protocol: str) -> None:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    triton, embedded = TritonBackend(url, protocol=protocol), EmbeddedBackend(str(repo), warmup=False)
    await triton.load()
    await embedded.load()
    try:
        for batch, hist_len in [(1, 1), (5, 9)]:
            arrays = example(batch, hist_len, seed=batch)  # spec shapes: item_ids is [batch]
            got, want = await triton.infer("tiny", arrays), await embedded.infer("tiny", arrays)
            assert got["score"].shape == want["score"].shape == (batch,)
            for name in want:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    finally:
        await triton.close()
        await embedded.close()


async def test_unknown_models_and_unserved_pins_are_refused_by_name(server: TritonServer) -> None:
    backend = TritonBackend(server.grpc_url)
    try:
        with pytest.raises(Unavailable, match="nope: not in Triton's repository"):
            await backend.load(["nope"])
        with pytest.raises(Unavailable, match=r"tiny: version 1 is not served \(Triton serves \[2\]\)"):
            await backend.load(pins={"tiny": 1})  # the config's policy is latest:1
    finally:
        await backend.close()


async def test_no_server_fails_fast_with_a_clear_reason() -> None:
    backend = TritonBackend(f"127.0.0.1:{free_port()}", timeout_s=5.0)
    t0 = time.perf_counter()
    with pytest.raises(Unavailable, match="unreachable"):
        await backend.load()
    assert time.perf_counter() - t0 < 2.0
    assert not await backend.ready()
    await backend.close()


async def test_triton_down_fails_fast_and_the_backend_recovers_by_itself(tmp_path: Path, repo: Path) -> None:
    require_tritonserver()
    ports = Ports(http=free_port(), grpc=free_port(), metrics=free_port())
    arrays = example(2, 3)

    def start() -> TritonServer:
        return TritonServer(repo, build_dir=tmp_path / "build", ports=ports, instance_count=1).start()

    server = start()
    backend = TritonBackend(server.grpc_url, timeout_s=5.0)
    try:
        await backend.load()
        before = await backend.infer("tiny", arrays)
        server.stop()

        t0 = time.perf_counter()
        with pytest.raises(Unavailable, match="unreachable"):
            await backend.infer("tiny", arrays)
        assert time.perf_counter() - t0 < 1.0  # no hang: the per-call timeout is 5 s
        assert not await backend.ready()
        assert backend.last_error

        server = start()  # same ports; the backend object is not touched
        deadline = time.monotonic() + 15
        while not await backend.ready() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        after = await backend.infer("tiny", arrays)
        np.testing.assert_array_equal(after["score"], before["score"])
    finally:
        await backend.close()
        server.stop()
