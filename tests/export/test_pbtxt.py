"""config.pbtxt: written from the spec, parsed with Triton's own protobuf, cross-checked with the ONNX graph."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.pbtxt import check_config, write_config
from serving.contracts.model_specs import SPECS, served_specs
from serving.contracts.triton_config import ConfigMismatch, TritonOptions, build_config, parse_config

REPO = Path(__file__).resolve().parents[2] / "model_repository"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_written_config_parses_and_matches_the_graph(name, tiny_export):
    ex = tiny_export(name)
    path = ex.repo / name / "config.pbtxt"
    cfg = text_format.Parse(path.read_text(), mc.ModelConfig())  # Triton's own parser, nothing of ours
    check_config(cfg, ex.result.path, SPECS[name].resolve(ex.config))
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == SPECS[name].max_batch_size
    assert cfg.dynamic_batching.max_queue_delay_microseconds == SPECS[name].max_queue_delay_us
    assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    assert cfg.version_policy.latest.num_versions == 1
    assert {w.batch_size for w in cfg.model_warmup} == {1, SPECS[name].max_batch_size}


def test_batch_only_tensors_are_reshaped(tiny_export):
    cfg = parse_config(tiny_export("din").repo / "din" / "config.pbtxt")
    hist_len = next(t for t in cfg.input if t.name == "hist_len")
    assert list(hist_len.dims) == [1] and hist_len.HasField("reshape") and list(hist_len.reshape.shape) == []
    hist = next(t for t in cfg.input if t.name == "hist_item_ids")
    assert list(hist.dims) == [-1] and not hist.HasField("reshape")


def test_warmup_uses_valid_data(tiny_export):
    ex = tiny_export("user_tower")
    cfg = parse_config(ex.repo / "user_tower" / "config.pbtxt")
    for w in cfg.model_warmup:
        assert w.inputs["hist_item_ids"].zero_data  # 0 = padding, valid for every embedding table
        assert list(w.inputs["hist_item_ids"].dims) == [ex.config["max_hist"]]


def test_cpu_variant_and_accelerators(tiny_export):
    ex = tiny_export("intent_bert")
    spec = SPECS["intent_bert"]
    cpu = build_config(spec, ex.config, TritonOptions(gpu=False, instance_count=2, cpu_threads=2))
    assert cpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU and cpu.instance_group[0].count == 2
    assert cpu.parameters["intra_op_thread_count"].string_value == "2"
    assert not cpu.HasField("optimization")

    trt = build_config(spec, ex.config, TritonOptions(accelerator="tensorrt"))
    acc = trt.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP16"
    top = f"64x{ex.config['max_len']}"
    assert acc.parameters["trt_profile_max_shapes"] == f"input_ids:{top},attention_mask:{top}"
    check_config(trt, ex.result.path, spec.resolve(ex.config))

    cuda = build_config(spec, ex.config, TritonOptions(accelerator="cuda"))
    assert cuda.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "cuda"
    with pytest.raises(ValueError, match="needs a GPU"):
        TritonOptions(gpu=False, accelerator="tensorrt")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('name: "cand_item_ids"', 'name: "candidate"', "input names"),
        ("data_type: TYPE_FP32", "data_type: TYPE_FP16", "TYPE_FP16 but the ONNX graph has TYPE_FP32"),
        ("max_batch_size: 1024", "max_batch_size: 0", r"hist_item_ids. dims \[-1\] .* rank differs"),
    ],
)
def test_mismatch_with_the_graph_is_reported(tiny_export, tmp_path, old, new, message):
    ex = tiny_export("din")
    text = (ex.repo / "din" / "config.pbtxt").read_text()
    assert old in text
    broken = tmp_path / "config.pbtxt"
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigMismatch, match=message):
        check_config(parse_config(broken), ex.result.path)


def test_write_config_creates_the_model_folder(tiny_export, tmp_path):
    ex = tiny_export("din")
    path = write_config(SPECS["din"], ex.config, tmp_path / "repo", TritonOptions(gpu=False))
    assert path == tmp_path / "repo" / "din" / "config.pbtxt"
    assert path.read_text().startswith("# Written by `python -m export`")


def _repository_configs() -> list[Path]:
    return sorted(REPO.glob("*/config.pbtxt"))


@pytest.mark.parametrize("path", _repository_configs(), ids=lambda p: p.parent.name)
def test_committed_repository_configs(path):
    """Every config.pbtxt in model_repository/ parses; ONNX ones match their built model when present."""
    cfg = parse_config(path)
    assert cfg.name == path.parent.name
    if cfg.platform == "ensemble":
        steps = cfg.ensemble_scheduling.step
        assert steps and all((REPO / s.model_name / "config.pbtxt").is_file() for s in steps)
        return
    if cfg.backend == "python":  # model.py is copied from export/ into each built version folder
        assert all((v / "model.py").is_file() for v in path.parent.glob("[0-9]*"))
        return
    assert cfg.platform == "onnxruntime_onnx"
    if cfg.name in SPECS:
        spec = SPECS[cfg.name]
        assert [t.name for t in cfg.input if t.name != "user_features"] == [
            t.name for t in spec.inputs if t.name != "user_features"
        ]
        assert [t.name for t in cfg.output] == spec.output_names
    models = sorted(path.parent.glob("[0-9]*/model.onnx"))
    if models:
        check_config(cfg, models[-1])


@pytest.mark.parametrize("name", [s.name for s in served_specs()])
def test_every_served_spec_has_a_repository_config(name):
    if (REPO / name / "config.pbtxt").is_file():
        return
    checkpoint = REPO.parent / "artifacts" / "checkpoints" / f"{SPECS[name].checkpoint}.pt"
    if not checkpoint.is_file():
        pytest.skip(f"{name}: not trained here yet, so no config to check")
    pytest.fail(f"{checkpoint} exists but model_repository/{name}/config.pbtxt does not: run `python -m export`")
