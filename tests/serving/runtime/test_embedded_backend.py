"""Model repository reading and the embedded ONNX Runtime backend."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.contracts.errors import ModelNotLoaded, ReloadFailed, RepositoryError
from serving.runtime.backends.embedded import EmbeddedBackend, resolve_providers
from serving.runtime.backends.repository import choose_version, list_models, model_info, parse_config, warmup_inputs
from serving.runtime.manifest import sha256_file
from tests.serving import gateway_helpers as g

pytestmark = pytest.mark.timeout(60)


def test_config_is_read_with_tritons_protobuf(tmp_path):
    g.add_din(tmp_path)
    cfg = parse_config(tmp_path / "din" / "config.pbtxt")
    info = model_info(cfg, 1)
    assert info.input_names == ["hist_item_ids", "hist_cat_ids", "hist_len", "cand_item_ids", "cand_cat_ids"]
    assert info.input("hist_len").dims == () and info.input("hist_len").wire_dims == (1,)  # [batch], reshaped
    assert info.input("hist_item_ids").dims == (-1,)
    assert info.max_batch_size == 256 and info.max_queue_delay_us == 2000
    assert info.max_lengths["hist_item_ids"] == g.MAX_HIST  # from the warm-up at the longest history
    shapes = [{k: v.shape for k, v in w.items()} for w in warmup_inputs(info)]
    assert shapes[1]["hist_item_ids"] == (256, g.MAX_HIST) and shapes[1]["hist_len"] == (256,)


def test_bad_config_names_file(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text("name: 'm'\nmax_batch_size: banana\n")
    with pytest.raises(RepositoryError, match=r"m/config.pbtxt"):
        list_models(tmp_path)


def test_version_choice_newest_or_pinned(tmp_path):
    g.add_summer(tmp_path, version=1)
    g.add_summer(tmp_path, version=3)
    (tmp_path / "summer" / "7").mkdir()  # a version folder without a model file is not a version
    cfg = parse_config(tmp_path / "summer" / "config.pbtxt")
    assert choose_version(tmp_path, cfg) == 3
    assert choose_version(tmp_path, cfg, pin=1) == 1
    with pytest.raises(RepositoryError, match="version 2"):
        choose_version(tmp_path, cfg, pin=2)


def test_providers_auto_falls_back_to_cpu_and_explicit_gpu_fails_clearly():
    assert resolve_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == "CUDAExecutionProvider"
    with pytest.raises(RepositoryError, match="onnxruntime-gpu"):
        resolve_providers("cuda", ["CPUExecutionProvider"])


@pytest.mark.asyncio
async def test_load_infer_and_unknown_model(tmp_path):
    g.add_summer(tmp_path)
    backend = EmbeddedBackend(str(tmp_path), provider="cpu", intra_op_threads=1)
    await backend.load()
    info = backend.info("summer")
    assert info.sha256 == sha256_file(tmp_path / "summer" / "1" / "model.onnx")
    assert info.providers == ("CPUExecutionProvider",)
    out = await backend.infer("summer", {"x": np.array([[1, 2, 3]], np.float64)})  # cast to float32
    assert out["y"].dtype == np.float32 and out["y"].tolist() == [6.0]
    with pytest.raises(ModelNotLoaded):
        await backend.infer("nope", {})
    with pytest.raises(ValueError, match="missing"):
        await backend.infer("summer", {"z": np.ones((1, 1))})
    await backend.close()


@pytest.mark.asyncio
async def test_graph_that_disagrees_with_config_is_refused(tmp_path):
    g.add_summer(tmp_path)
    text = (tmp_path / "summer" / "config.pbtxt").read_text().replace('name: "y"', 'name: "out"')
    (tmp_path / "summer" / "config.pbtxt").write_text(text)
    backend = EmbeddedBackend(str(tmp_path), provider="cpu")
    with pytest.raises(RepositoryError, match="output out: not in the graph"):
        await backend.load()


@pytest.mark.asyncio
async def test_reload_swaps_new_version_and_keeps_old_on_failure(tmp_path):
    g.add_summer(tmp_path, factor=1.0)
    backend = EmbeddedBackend(str(tmp_path), provider="cpu")
    await backend.load()
    x = {"x": np.ones((1, 2), np.float32)}
    assert (await backend.reload()).unchanged == ["summer"]  # nothing new: no reload
    g.add_summer(tmp_path, version=2, factor=10.0)
    result = await backend.reload()
    assert result.changed == {"summer": (1, 2)}
    assert (await backend.infer("summer", x))["y"].tolist() == [20.0]
    # A broken new version: refused, version 2 keeps serving.
    (tmp_path / "summer" / "3").mkdir()
    (tmp_path / "summer" / "3" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ReloadFailed, match="cannot load"):
        await backend.reload()
    assert backend.info("summer").version == 2
    assert (await backend.infer("summer", x))["y"].tolist() == [20.0]
    await backend.close()


@pytest.mark.asyncio
async def test_calls_running_during_a_swap_finish_on_their_session(tmp_path):
    g.add_summer(tmp_path, factor=1.0)
    backend = EmbeddedBackend(str(tmp_path), provider="cpu")
    await backend.load()
    g.add_summer(tmp_path, version=2, factor=2.0)
    x = {"x": np.ones((4, 64), np.float32)}
    running = [asyncio.ensure_future(backend.infer("summer", x)) for _ in range(20)]
    await backend.reload()
    after = await backend.infer("summer", x)
    results = await asyncio.gather(*running)
    assert all(r["y"][0] in (64.0, 128.0) for r in results)  # every call answered, by one version or the other
    assert after["y"][0] == 128.0
    await backend.close()
