"""The Python-backend view of a model repository (no server): same contract, links to the ONNX files, copies
of Python models and ensembles, the production repository untouched, and refusals that protect user folders."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from serving.triton.__main__ import main
from serving.triton.ort_model import group_by_shape, split_rows
from serving.triton.view import MARKER, ViewError, build_view, read_source_config
from tests.serving.triton.tiny import write_onnx_model, write_repository


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_repository(tmp_path / "model_repository")


def test_onnx_model_keeps_its_contract_under_the_python_backend(repo: Path, tmp_path: Path) -> None:
    view = build_view(repo, tmp_path / "view")
    source, served = (
        read_source_config(repo / "tiny" / "config.pbtxt"),
        read_source_config(view.path / "tiny" / "config.pbtxt"),
    )

    assert view.models == {"tiny": "onnx->python", "prep": "python", "pipeline": "ensemble"}
    assert (served.name, served.backend, served.platform) == ("tiny", "python", "")
    for field in ("input", "output", "max_batch_size", "dynamic_batching", "version_policy", "model_warmup"):
        assert getattr(served, field) == getattr(source, field), field
    assert served.input[1].HasField("reshape")  # [batch] ids stay dims [1] + reshape []
    assert [(g.kind, g.count) for g in served.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 2)]
    assert not served.HasField("optimization")  # the TensorRT accelerator of the ORT backend is gone
    assert served.parameters["onnx_file"].string_value == "model.onnx"
    assert served.parameters["intra_op_thread_count"].string_value == "1"  # ORT settings still reach ORT
    assert not served.default_model_filename


def test_every_version_gets_the_runtime_and_a_link_to_its_onnx_file(repo: Path, tmp_path: Path) -> None:
    view = build_view(repo, tmp_path / "view")
    for version in ("1", "2"):
        folder = view.path / "tiny" / version
        assert (folder / "model.onnx").resolve() == (repo / "tiny" / version / "model.onnx").resolve()
        assert "class TritonPythonModel" in (folder / "model.py").read_text()


def test_python_models_and_ensembles_are_copied_unchanged(repo: Path, tmp_path: Path) -> None:
    view = build_view(repo, tmp_path / "view")
    for name in ("prep", "pipeline"):
        assert tree_digest(view.path / name) == tree_digest(repo / name)


def test_the_production_repository_is_not_modified(repo: Path, tmp_path: Path) -> None:
    before = tree_digest(repo)
    build_view(repo, tmp_path / "view")
    build_view(repo, tmp_path / "view")  # a rebuild replaces the earlier view
    assert tree_digest(repo) == before
    assert sorted(p.name for p in repo.iterdir()) == ["pipeline", "prep", "tiny"]


def test_instance_count_override(repo: Path, tmp_path: Path) -> None:
    view = build_view(repo, tmp_path / "view", instance_count=1)
    assert [g.count for g in read_source_config(view.path / "tiny" / "config.pbtxt").instance_group] == [1]


def test_unservable_models_are_skipped_with_a_reason(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo")
    (repo / "tiny" / "1" / "model.onnx").unlink()
    (repo / "tiny" / "2" / "model.onnx").unlink()
    trt = mc.ModelConfig(name="engine", platform="tensorrt_plan", max_batch_size=4)
    (repo / "engine").mkdir()
    (repo / "engine" / "config.pbtxt").write_text(text_format.MessageToString(trt))

    view = build_view(repo, tmp_path / "view")

    assert view.models == {"prep": "python"}
    assert "make models" in view.skipped["tiny"]
    assert "tensorrt_plan" in view.skipped["engine"]
    assert "tiny" in view.skipped["pipeline"]  # an ensemble missing a step would only fail to load
    assert not (view.path / "pipeline").exists()


def test_refuses_paths_that_could_damage_the_repository_or_user_folders(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ViewError, match="outside"):
        build_view(repo, repo / "view")
    someone_elses = tmp_path / "notes"
    someone_elses.mkdir()
    (someone_elses / "keep.txt").write_text("precious")
    with pytest.raises(ViewError, match="refusing"):
        build_view(repo, someone_elses)
    assert (someone_elses / "keep.txt").read_text() == "precious"
    with pytest.raises(ViewError, match="does not exist"):
        build_view(tmp_path / "missing", tmp_path / "view")


def test_config_folder_name_mismatch_is_an_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_onnx_model(repo, "tiny")
    os.rename(repo / "tiny", repo / "other")
    with pytest.raises(ViewError, match="differs from its folder"):
        build_view(repo, tmp_path / "view")


def test_cli_view_only(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--repository", str(repo), "--build-dir", str(tmp_path / "b"), "--view-only"]) == 0
    assert (tmp_path / "b" / "repository" / MARKER).is_file()
    assert "onnx->python" in capsys.readouterr().out


def test_requests_with_equal_shapes_share_one_call() -> None:
    shapes = [{"hist": (1, 5), "ids": (1,)}, {"hist": (2, 7), "ids": (2,)}, {"hist": (3, 5), "ids": (3,)}]
    assert group_by_shape(shapes) == [[0, 2], [1]]


def test_split_rows_returns_each_request_its_rows() -> None:
    out = {"score": np.arange(6.0), "vec": np.arange(12.0).reshape(6, 2)}
    parts = split_rows(out, [1, 3, 2])
    assert [p["score"].tolist() for p in parts] == [[0.0], [1.0, 2.0, 3.0], [4.0, 5.0]]
    assert parts[2]["vec"].tolist() == [[8.0, 9.0], [10.0, 11.0]]
