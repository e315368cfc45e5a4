"""serving/contracts/triton_config.py: spec -> Triton ModelConfig without onnx or torch, and back through text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from serving.contracts.model_specs import SPECS, TCN_MAX_PLANS, served_specs
from serving.contracts.triton_config import (
    TritonOptions,
    build_config,
    config_problems,
    config_text,
    parse_config,
    parse_config_text,
)

ROOT = Path(__file__).resolve().parents[3]

_REC = {"max_hist": 5, "n_items": 20, "n_categories": 4, "dim": 8, "user_feature_cardinalities": [3, 2]}
_TCN = {
    "n_past": 4,
    "n_future": 2,
    "context_days": 14,
    "horizon": 7,
    "n_stores": 3,
    "n_categories": 4,
    "quantiles": [0.1, 0.5, 0.9],
}
# A small checkpoint config for every served spec (the keys its dims, dim rules and example maker read).
CONFIGS: dict[str, dict[str, object]] = {
    "user_tower": _REC,
    "din": _REC,
    "intent_bert": {"max_len": 16, "vocab_size": 30, "n_labels": 5},
    "tcn": _TCN,
    "tcn_plans": _TCN,
}


def test_every_served_spec_has_a_test_config():
    assert sorted(CONFIGS) == sorted(s.name for s in served_specs())


def test_building_configs_loads_no_onnx_torch_training_or_export():
    code = (
        "import sys, json\n"
        "from serving.contracts.model_specs import served_specs\n"
        "from serving.contracts.triton_config import build_config, config_text\n"
        f"configs = json.loads({json.dumps(CONFIGS)!r})\n"
        "for spec in served_specs():\n"
        "    config_text(build_config(spec, configs[spec.name]))\n"
        "loaded = sorted(m for m in ('torch', 'onnx', 'training', 'export') if m in sys.modules)\n"
        "assert not loaded, f'importing and using the builder loaded {loaded}'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("name", [s.name for s in served_specs()])
def test_config_round_trips_through_text_and_matches_the_spec(name, tmp_path):
    spec = SPECS[name]
    config = CONFIGS[name]
    resolved = spec.resolve(config)
    cfg = build_config(spec, config)
    text = config_text(cfg)
    assert parse_config_text(text) == cfg
    assert text_format.Parse(text, mc.ModelConfig()) == cfg  # Triton's own parser, nothing of ours
    (tmp_path / "config.pbtxt").write_text(text)
    assert parse_config(tmp_path / "config.pbtxt") == cfg

    assert [t.name for t in cfg.input] == resolved.input_names
    assert [t.name for t in cfg.output] == resolved.output_names
    for tensors, specs in ((cfg.input, resolved.inputs), (cfg.output, resolved.outputs)):
        for t, s in zip(tensors, specs, strict=True):
            assert mc.DataType.Name(t.data_type) == s.triton_dtype
            assert t.HasField("reshape") == (s.dims == ())
    assert config_problems(cfg, resolved) == []
    assert cfg.max_batch_size == spec.max_batch_size
    assert {w.batch_size for w in cfg.model_warmup} == {1, spec.max_batch_size}
    for w in cfg.model_warmup:
        assert sorted(w.inputs) == sorted(resolved.input_names)


def test_optional_user_features_follow_the_config():
    without = build_config(SPECS["user_tower"], {**_REC, "user_feature_cardinalities": []})
    assert "user_features" not in [t.name for t in without.input]
    with_features = build_config(SPECS["user_tower"], _REC)
    (feats,) = [t for t in with_features.input if t.name == "user_features"]
    assert list(feats.dims) == [2]


@pytest.mark.parametrize(
    ("policy", "field", "value"),
    [("latest:2", "latest", 2), ("all", "all", None), ("specific:1,3", "specific", [1, 3])],
)
def test_version_policy(policy, field, value):
    cfg = build_config(SPECS["din"], _REC, TritonOptions(version_policy=policy))
    assert cfg.version_policy.WhichOneof("policy_choice") == field
    if field == "latest":
        assert cfg.version_policy.latest.num_versions == value
    elif field == "specific":
        assert list(cfg.version_policy.specific.versions) == value
    with pytest.raises(ValueError, match="version policy"):
        build_config(SPECS["din"], _REC, TritonOptions(version_policy="newest"))


def test_config_problems_name_what_disagrees_with_the_spec():
    spec = SPECS["din"].resolve(_REC)
    cfg = build_config(SPECS["din"], _REC)
    cfg.input[0].data_type = mc.DataType.Value("TYPE_INT32")
    cfg.model_warmup[0].inputs.pop("hist_len")
    problems = config_problems(cfg, spec)
    assert any("input 'hist_item_ids' TYPE_INT32[-1] != spec TYPE_INT64[-1]" in p for p in problems)
    assert any("warm-up 'batch_1_hist_5' inputs" in p for p in problems)


def test_plans_axis_is_dynamic_and_warmed_up_at_its_maximum():
    spec = SPECS["tcn_plans"]
    cfg = build_config(spec, _TCN, TritonOptions(accelerator="tensorrt"))
    dims = {t.name: list(t.dims) for t in (*cfg.input, *cfg.output)}
    assert dims["future_plans"] == [-1, 2, 7] and dims["past_features"] == [4, 14]
    assert dims["quantiles"] == [-1, 7, 3] and dims["mean"] == [-1, 7]
    assert {tuple(w.inputs["future_plans"].dims) for w in cfg.model_warmup} == {(TCN_MAX_PLANS, 2, 7)}
    trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters
    assert f"future_plans:{spec.max_batch_size}x{TCN_MAX_PLANS}x2x7" in trt["trt_profile_max_shapes"]
    assert "future_plans:1x1x2x7" in trt["trt_profile_min_shapes"]
