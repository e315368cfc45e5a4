"""ort_model.py's execute() without a server, through a stand-in for the stub's triton_python_backend_utils:
one ORT call per distinct shape, answers equal to ORT request by request, and a bad request failing alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import json_format

from serving.triton import ort_model
from serving.triton.view import python_config
from tests.serving.triton.tiny import N_IDS, example, tiny_config, write_onnx_model


@dataclass
class FakeTensor:
    name: str
    array: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor]
    error: FakeError | None = None


@dataclass
class FakeError:
    message: str
    code: int

    INVALID_ARG, INTERNAL = 3, 13


FAKE_PB_UTILS = SimpleNamespace(
    get_input_tensor_by_name=lambda request, name: FakeTensor(name, request[name]),
    InferenceResponse=FakeResponse,
    Tensor=FakeTensor,
    TritonError=FakeError,
)


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ort_model.TritonPythonModel:
    monkeypatch.setattr(ort_model, "pb_utils", FAKE_PB_UTILS)
    folder = write_onnx_model(tmp_path, "tiny")
    config = json_format.MessageToDict(python_config(tiny_config()), preserving_proto_field_name=True)
    m = ort_model.TritonPythonModel()
    m.initialize({"model_config": json.dumps(config), "model_repository": str(folder), "model_version": "1"})
    return m


def outputs(response: FakeResponse) -> dict[str, np.ndarray]:
    assert response.error is None, response.error
    return {t.name: t.array for t in response.output_tensors}


def test_one_ort_call_per_shape_and_answers_equal_ort(model: ort_model.TritonPythonModel, tmp_path: Path) -> None:
    requests = [example(1, 4, seed=1), example(3, 4, seed=2), example(2, 9, seed=3), example(1, 4, seed=4)]
    calls = []
    run = model.session.run
    model.session = SimpleNamespace(run=lambda names, feeds: calls.append(feeds["hist"].shape) or run(names, feeds))

    responses = model.execute(requests)

    assert sorted(calls) == [(2, 9), (5, 4)]  # requests 0, 1 and 3 shared one call
    reference = ort.InferenceSession(str(tmp_path / "tiny" / "1" / "model.onnx"))
    for request, response in zip(requests, responses, strict=True):
        want = dict(zip(["embedding", "score"], reference.run(["embedding", "score"], request), strict=True))
        got = outputs(response)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)


def test_a_bad_request_fails_alone(model: ort_model.TritonPythonModel) -> None:
    good, bad = example(2, 3, seed=5), example(1, 3, seed=6)
    bad["item_ids"][:] = N_IDS + 1

    responses = model.execute([good, bad, good])

    assert responses[1].error is not None
    assert responses[1].error.code == FakeError.INVALID_ARG
    assert responses[1].error.message.startswith("tiny: InvalidArgument")
    np.testing.assert_array_equal(outputs(responses[0])["score"], outputs(responses[2])["score"])


def test_a_config_that_disagrees_with_the_graph_fails_the_load(tmp_path: Path) -> None:
    folder = write_onnx_model(tmp_path, "tiny")
    cfg = python_config(tiny_config())
    cfg.input[0].name = "feats"
    config = json_format.MessageToDict(cfg, preserving_proto_field_name=True)
    with pytest.raises(ValueError, match=r"disagrees with config\.pbtxt"):
        ort_model.TritonPythonModel().initialize(
            {"model_config": json.dumps(config), "model_repository": str(folder), "model_version": "1"}
        )
