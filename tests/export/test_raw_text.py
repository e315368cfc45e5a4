"""Raw-text intent in Triton: the Python-backend tokenizer (run here with a stand-in for Triton's
`triton_python_backend_utils`) and the ensemble config that chains it to the BERT model."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import types

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from export.pbtxt import write_message
from serving.contracts.model_specs import SPECS
from serving.contracts.triton_config import (
    ConfigMismatch,
    build_ensemble_config,
    build_tokenizer_config,
    check_ensemble,
    parse_config,
)


class _Tensor:
    def __init__(self, name: str, data: np.ndarray):
        self.name, self.data = name, data

    def as_numpy(self) -> np.ndarray:
        return self.data


class _Response:
    def __init__(self, output_tensors: list[_Tensor]):
        self.outputs = {t.name: t.data for t in output_tensors}


@pytest.fixture
def tokenizer_model(tmp_path, monkeypatch):
    intents = pytest.importorskip("training.data.intents")
    try:
        source = intents.encoder_dir() / "tokenizer.json"
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        pytest.skip(f"encoder package not installed: {exc}")
    stub = types.ModuleType("triton_python_backend_utils")
    stub.Tensor = _Tensor
    stub.InferenceResponse = _Response
    stub.get_input_tensor_by_name = lambda request, name: _Tensor(name, request[name])
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stub)
    module = importlib.reload(importlib.import_module("export.triton_tokenizer"))
    (tmp_path / "1").mkdir()
    shutil.copyfile(source, tmp_path / "1" / "tokenizer.json")
    config = {"parameters": {"max_len": {"string_value": "16"}}}
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
    return model, intents


def test_tokenizer_model_matches_training_tokenisation(tokenizer_model):
    model, intents = tokenizer_model
    texts = ["my card has not arrived yet", "hi", "why was I charged twice for the same thing " * 5]
    requests = [
        {"text": np.array([[t.encode()] for t in texts[:2]], dtype=object)},
        {"text": np.array([[texts[2]]], dtype=object)},
    ]
    out = model.execute(requests)
    assert len(out) == 2
    want_ids, want_mask = intents.tokenize(intents.load_tokenizer(16), texts)
    first = out[0].outputs
    width = int(want_mask[:2].sum(1).max())
    assert first["input_ids"].dtype == np.int64 and first["input_ids"].shape == (2, width)  # padded to its longest
    assert (first["input_ids"] == want_ids[:2, :width]).all() and (
        first["attention_mask"] == want_mask[:2, :width]
    ).all()
    assert out[1].outputs["input_ids"].shape == (1, 16)  # truncated to max_len
    assert (out[1].outputs["input_ids"] == want_ids[2:]).all()


def test_ensemble_chains_tokenizer_and_bert(tiny_export, tmp_path):
    ex = tiny_export("intent_bert")
    repo = tmp_path / "repo"
    shutil.copytree(ex.repo / "intent_bert", repo / "intent_bert")
    write_message(build_tokenizer_config(24, 64), repo)
    bert = SPECS["intent_bert"].resolve(ex.config)
    path = write_message(build_ensemble_config(bert), repo)
    cfg = parse_config(path)
    assert cfg.platform == "ensemble" and [s.model_name for s in cfg.ensemble_scheduling.step] == [
        "intent_tokenizer",
        "intent_bert",
    ]
    assert [t.name for t in cfg.output] == ["logits", "probs"] and cfg.input[0].data_type == mc.TYPE_STRING
    check_ensemble(cfg, repo)

    tok = parse_config(repo / "intent_tokenizer" / "config.pbtxt")
    assert tok.backend == "python" and tok.parameters["max_len"].string_value == "24"
    assert tok.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU

    broken = parse_config(path)
    del broken.ensemble_scheduling.step[1].input_map["attention_mask"]
    with pytest.raises(ConfigMismatch, match="input 'attention_mask' not mapped"):
        check_ensemble(broken, repo)
    broken = parse_config(path)
    broken.ensemble_scheduling.step[0].model_name = "missing_model"
    with pytest.raises(ConfigMismatch, match="missing_model"):
        check_ensemble(broken, repo)
