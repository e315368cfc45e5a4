"""The launcher's start/stop with a real server: no process is left behind, and a model that cannot load
gives a start error that names it (and leaves nothing behind either)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from google.protobuf import text_format

from serving.triton import TritonServer, TritonStartError
from serving.triton.launcher import group_members
from tests.serving.triton.helpers import live_processes_mentioning, require_tritonserver
from tests.serving.triton.tiny import tiny_config, write_onnx_model

pytestmark = pytest.mark.triton


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    require_tritonserver()
    repo, build = tmp_path / "repo", tmp_path / "build"
    write_onnx_model(repo, "tiny")
    server = TritonServer(repo, build_dir=build, instance_count=1).start()
    try:
        ours = live_processes_mentioning(str(build))  # the server and each model instance's Python stub
        assert len(ours) >= 2, ours
        assert set(ours) <= set(group_members(server.pid or -1))  # one process group, so one signal reaches all
    finally:
        t0 = time.perf_counter()
        server.stop()
        stop_s = time.perf_counter() - t0

    assert live_processes_mentioning(str(build)) == []
    assert stop_s < server.stop_grace_s  # a clean SIGTERM exit, not the SIGKILL fallback
    server.stop()  # idempotent
    assert not server.running


def test_a_model_that_cannot_load_is_named_in_the_start_error(tmp_path: Path) -> None:
    require_tritonserver()
    repo, build = tmp_path / "repo", tmp_path / "build"
    write_onnx_model(repo, "tiny")
    # `mismatch`: the config names an input the graph does not have. `garbage`: not an ONNX file at all.
    folder = write_onnx_model(repo, "mismatch")
    cfg = tiny_config("mismatch")
    cfg.input[0].name = "feats"
    cfg.model_warmup[0].inputs["feats"].CopyFrom(cfg.model_warmup[0].inputs.pop("features"))
    (folder / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    garbage = write_onnx_model(repo, "garbage")
    (garbage / "1" / "model.onnx").write_bytes(b"this is not a protobuf")

    server = TritonServer(repo, build_dir=build, instance_count=1, ready_timeout_s=60)
    with pytest.raises(TritonStartError) as err:
        server.start()

    message = str(err.value)
    assert "mismatch" in message and "disagrees with config.pbtxt" in message
    assert "garbage" in message
    assert "tritonserver.log" in message  # the log's tail comes with it
    assert live_processes_mentioning(str(build)) == []
