"""The spec registry: every spec is complete, resolvable, and its example maker produces valid inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest

from export.models import EXPORTERS
from serving.contracts.model_specs import SPECS, TRITON_DTYPES, served_specs


def test_registry_holds_the_served_models():
    assert {"user_tower", "item_tower", "din", "intent_bert"} <= set(SPECS)
    assert "item_tower" not in {s.name for s in served_specs()}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_has_a_tiny_model_factory(name):
    # The parity tests iterate over EXPORTERS; a spec without one would silently go unproven.
    assert name in EXPORTERS, f"spec {name!r} has no exporter / tiny model in export/models.py, so no parity test"
    assert EXPORTERS[name].tiny_config, f"{name}: empty tiny config"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_is_well_formed(name):
    spec = SPECS[name]
    _, config = EXPORTERS[name].tiny()
    resolved = spec.resolve(config)
    names = resolved.input_names + resolved.output_names
    assert len(names) == len(set(names)), "tensor names must be unique"
    generated = re.compile(r"^(input|output|onnx|l_)\W*_?\d*$")  # what exporters make up when not told
    assert all(n.isidentifier() and not generated.match(n) for n in names), names
    for t in (*resolved.inputs, *resolved.outputs):
        assert t.dtype in TRITON_DTYPES
        assert all(isinstance(d, int) and (d == -1 or d > 0) for d in t.dims), (t.name, t.dims)
    assert spec.max_batch_size >= max(spec.preferred_batch_sizes or (1,))
    assert spec.atol > 0 and spec.rtol >= 0
    if spec.seq_axis:
        assert resolved.parity_lengths and max(resolved.parity_lengths) == resolved.seq_max
        assert len(resolved.parity_lengths) >= 2, "parity needs several sequence lengths"


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("batch", [1, 5])
def test_example_inputs_are_valid(name, batch):
    spec = SPECS[name]
    _, config = EXPORTERS[name].tiny()
    arrays = spec.example_inputs(config, batch, np.random.default_rng(0))  # checks names, dtypes, shapes
    assert all(a.shape[0] == batch for a in arrays.values())
    for key, a in arrays.items():
        if a.dtype == np.int64:
            assert a.min() >= 0, f"{key}: negative ids"
        if key.endswith("item_ids"):
            assert a.max() <= config["n_items"]
    if "series_scale" in arrays:
        assert (arrays["series_scale"] >= 1).all() and (arrays["past_features"][:, 0] >= 0).all()
    if "hist_len" in arrays:
        width = arrays["hist_item_ids"].shape[1]
        assert width <= config["max_hist"] and arrays["hist_len"].max() <= width
        beyond = np.arange(width)[None, :] >= arrays["hist_len"][:, None]
        assert (arrays["hist_item_ids"][beyond] == 0).all(), "padding must be 0 beyond hist_len"
    if "attention_mask" in arrays:
        assert (arrays["input_ids"][arrays["attention_mask"] == 0] == 0).all()
        assert arrays["input_ids"].max() < config["vocab_size"]


def test_example_length_is_honoured():
    _, config = EXPORTERS["din"].tiny()
    arrays = SPECS["din"].example_inputs(config, 4, np.random.default_rng(0), length=7)
    assert arrays["hist_item_ids"].shape == (4, 7) and arrays["hist_len"].max() == 7


def test_optional_input_dropped_when_the_model_has_no_user_features():
    _, config = EXPORTERS["user_tower"].tiny()
    assert "user_features" in SPECS["user_tower"].resolve(config).input_names
    config["user_feature_cardinalities"] = []
    resolved = SPECS["user_tower"].resolve(config)
    assert "user_features" not in resolved.input_names
    assert list(SPECS["user_tower"].example_inputs(config, 2, np.random.default_rng(0))) == resolved.input_names


def test_named_dims_come_from_the_config():
    _, config = EXPORTERS["intent_bert"].tiny()
    resolved = SPECS["intent_bert"].resolve(config)
    assert [t.dims for t in resolved.outputs] == [(config["n_labels"],)] * 2
    with pytest.raises(KeyError, match="n_labels"):
        SPECS["intent_bert"].resolve({k: v for k, v in config.items() if k != "n_labels"})
