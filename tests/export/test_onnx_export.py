"""ONNX export: graph matches the spec, ONNX Runtime equals PyTorch at batch 1/3/64 and several lengths."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch

from export import onnx_export
from export.models import EXPORTERS
from export.onnx_export import GraphMismatch, ParityError, check_graph, check_parity, export_onnx, quantize_int8
from serving.contracts.model_specs import SPECS


@pytest.mark.parametrize("name", sorted(SPECS))
def test_export_matches_spec_and_pytorch(name, tiny_export):
    # Parametrised over the registry: a new spec without an exporter fails here (KeyError) as well.
    ex = tiny_export(name)
    spec = SPECS[name]
    assert ex.result.exporter == "dynamo", ex.result.fallback_reason
    check_graph(ex.result.path, spec.resolve(ex.config))
    report = check_parity(ex.module, spec, ex.config, ex.result.path)
    assert {c.batch for c in report.cases} == {1, 3, 64}
    if spec.seq_axis:
        lengths = {c.length for c in report.cases}
        assert len(lengths) >= 2 and max(lengths) == spec.max_length(ex.config)
    assert report.max_abs_err <= spec.atol


def test_parity_failure_is_loud(tiny_export):
    ex = tiny_export("din")
    broken = EXPORTERS["din"].tiny(seed=1)[0]  # same architecture, other weights
    with pytest.raises(ParityError, match=r"din: .*max abs error"):
        check_parity(broken, SPECS["din"], ex.config, ex.result.path, batches=(3,))


def test_graph_check_names_the_difference(tiny_export):
    ex = tiny_export("din")
    spec = SPECS["din"].resolve(ex.config)
    renamed = dataclasses.replace(spec, inputs=(dataclasses.replace(spec.inputs[0], name="history"), *spec.inputs[1:]))
    with pytest.raises(GraphMismatch, match="history"):
        check_graph(ex.result.path, renamed)
    fp16 = dataclasses.replace(spec.outputs[0], dtype="float16")
    retyped = dataclasses.replace(spec, outputs=(fp16, *spec.outputs[1:]))
    with pytest.raises(GraphMismatch, match="dtype FLOAT != spec float16"):
        check_graph(ex.result.path, retyped)


def test_batch_and_history_axes_are_dynamic_in_the_graph(tiny_export):
    ex = tiny_export("user_tower")
    model = onnx.load(str(ex.result.path))
    inputs, _ = onnx_export.graph_tensors(model)
    dims = {n: onnx_export.graph_dims(v) for n, v in inputs.items()}
    assert dims["hist_item_ids"] == dims["hist_cat_ids"]  # one shared symbol per axis name
    assert all(isinstance(d, str) for d in dims["hist_item_ids"])


def test_torchscript_fallback_when_dynamo_fails(tmp_path, monkeypatch):
    module, config = EXPORTERS["din"].tiny()
    real = onnx_export._run_exporter

    def no_dynamo(name, *args):
        if name == "dynamo":
            raise RuntimeError("simulated torch.export failure")
        return real(name, *args)

    monkeypatch.setattr(onnx_export, "_run_exporter", no_dynamo)
    result = export_onnx(module, SPECS["din"], config, tmp_path / "din.onnx")
    assert result.exporter == "torchscript" and "simulated" in result.fallback_reason
    check_parity(module, SPECS["din"], config, result.path, batches=(1, 3))


def test_user_tower_without_user_features(tmp_path):
    exporter = EXPORTERS["user_tower"]
    _, config = exporter.tiny()
    config["user_feature_cardinalities"] = []
    module = exporter.build(config)
    result = export_onnx(module, SPECS["user_tower"], config, tmp_path / "u.onnx", exporter="torchscript")
    assert [i.name for i in onnx.load(str(result.path)).graph.input] == ["hist_item_ids", "hist_cat_ids", "hist_len"]
    check_parity(module, SPECS["user_tower"], config, result.path, batches=(1, 3))


def test_rebuild_from_checkpoint_payload_equals_original():
    exporter = EXPORTERS["intent_bert"]
    module, config = exporter.tiny()
    state = module.model.state_dict()
    rebuilt = exporter.from_checkpoint({"config": config, "state_dict": state, "extra": {"temperature": 2.0}})
    arrays = SPECS["intent_bert"].example_inputs(config, 2, np.random.default_rng(0))
    with torch.no_grad():
        args = [torch.from_numpy(a) for a in arrays.values()]
        logits, probs = rebuilt(*args)
        torch.testing.assert_close(logits, module(*args)[0])
        torch.testing.assert_close(probs, torch.softmax(logits / 2.0, -1))


def test_int8_quantisation_of_the_intent_model(tiny_export, tmp_path):
    ex = tiny_export("intent_bert")
    dst = quantize_int8(ex.result.path, tmp_path / "int8.onnx")
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}, ops
    spec = SPECS["intent_bert"]
    arrays = spec.example_inputs(ex.config, 32, np.random.default_rng(0))
    fp32 = onnx_export.ort_session(ex.result.path).run(["logits", "probs"], arrays)
    int8 = onnx_export.ort_session(dst).run(["logits", "probs"], arrays)
    assert int8[0].shape == fp32[0].shape and np.allclose(int8[1].sum(1), 1.0, atol=1e-4)
    # int8 weights move the logits a little, not wholesale (measured: correlation 0.998 on this tiny model).
    assert np.corrcoef(fp32[0].ravel(), int8[0].ravel())[0, 1] > 0.98


def test_plans_model_equals_the_tcn_row_by_row(tiny_export):
    """tcn_plans (encoder once, K plans) answers every plan as the TCN answers that plan as a row of its own."""
    tcn, plans = tiny_export("tcn"), tiny_export("tcn_plans")
    same = zip(tcn.module.state_dict().items(), plans.module.state_dict().items(), strict=True)
    assert all(a == b and torch.equal(x, y) for (a, x), (b, y) in same), "the tiny models must share weights"
    spec = SPECS["tcn"]
    for batch, k in ((1, 24), (3, 5)):
        arrays = SPECS["tcn_plans"].example_inputs(plans.config, batch, np.random.default_rng(k), length=k)
        got = onnx_export.ort_session(plans.result.path).run(["quantiles", "mean"], arrays)
        # The TCN's rows: each series' past repeated, one plan per row (what /v1/price sends without tcn_plans).
        rows = {n: np.repeat(a, k, axis=0) for n, a in arrays.items() if n != "future_plans"}
        rows["future_features"] = arrays["future_plans"].reshape(batch * k, *arrays["future_plans"].shape[2:])
        rows = {n: rows[n] for n in spec.input_names}
        with torch.no_grad():
            torch_rows = [o.numpy() for o in tcn.module(*(torch.from_numpy(a) for a in rows.values()))]
        ort_rows = onnx_export.ort_session(tcn.result.path).run(["quantiles", "mean"], rows)
        for g, want in ((got, torch_rows), (got, ort_rows)):
            for out, w in zip(g, want, strict=True):
                assert out.shape == (batch, k, *w.shape[1:])
                np.testing.assert_allclose(out.reshape(w.shape), w, atol=spec.atol, rtol=spec.rtol)


def test_multi_interest_user_tower_exports_one_vector_per_head(tmp_path):
    exporter = EXPORTERS["user_tower"]
    _, config = exporter.tiny()
    config.update(attn_heads=3, multi_interest=True, share_item_emb=True)
    module = exporter.build(config)
    resolved = SPECS["user_tower"].resolve(config)
    assert resolved.outputs[0].dims == (3, config["dim"])
    result = export_onnx(module, SPECS["user_tower"], config, tmp_path / "u.onnx")
    check_graph(result.path, resolved)
    check_parity(module, SPECS["user_tower"], config, result.path, batches=(1, 3))
    # A single-vector tower keeps the same rank: one interest.
    _, single = exporter.tiny()
    assert SPECS["user_tower"].resolve(single).outputs[0].dims == (1, single["dim"])
