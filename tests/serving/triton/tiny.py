"""A tiny model repository shaped like the export's: an onnxruntime_onnx model, a Python model and an ensemble.

`tiny` mimics the DIN/user-tower conventions: a [batch] id input declared as dims [1] with an empty reshape,
a variable-length history axis, a [batch] output with the same reshape, dynamic batching and warm-up.
Built with onnx.helper (no torch), so the tests own their model and know its exact answers via ORT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2 as mc

N_IDS, DIM, N_FEATURES = 10, 3, 4
MAX_BATCH = 16
QUEUE_DELAY_US = 20_000  # long enough that concurrent test clients land in one batch even on a busy 2-core box


def tiny_onnx(seed: int = 0) -> onnx.ModelProto:
    """embedding = E[item_ids] + features @ W ;  score = sum(embedding * sum_l E[hist[:, l]], axis=1)."""
    rng = np.random.default_rng(seed)
    table = numpy_helper.from_array(rng.normal(size=(N_IDS, DIM)).astype(np.float32), "table")
    weight = numpy_helper.from_array(rng.normal(size=(N_FEATURES, DIM)).astype(np.float32), "weight")
    axis1 = numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")
    nodes = [
        helper.make_node("Gather", ["table", "item_ids"], ["item_vec"]),
        helper.make_node("MatMul", ["features", "weight"], ["proj"]),
        helper.make_node("Add", ["item_vec", "proj"], ["embedding"]),
        helper.make_node("Gather", ["table", "hist"], ["hist_vecs"]),
        helper.make_node("ReduceSum", ["hist_vecs", "axis1"], ["hist_sum"], keepdims=0),
        helper.make_node("Mul", ["embedding", "hist_sum"], ["prod"]),
        helper.make_node("ReduceSum", ["prod", "axis1"], ["score"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs=[
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N_FEATURES]),
            helper.make_tensor_value_info("item_ids", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("hist", TensorProto.INT64, ["batch", "hist_len"]),
        ],
        outputs=[
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
        ],
        initializer=[table, weight, axis1],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every ORT release of the last years reads
    onnx.checker.check_model(model)
    return model


def tiny_config(name: str = "tiny", gpu: bool = True, count: int = 2) -> mc.ModelConfig:
    """Like export/pbtxt.py writes it (GPU instance group, as for the NGC image)."""
    cfg = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=MAX_BATCH)
    cfg.default_model_filename = "model.onnx"
    cfg.version_policy.latest.num_versions = 1
    cfg.input.add(name="features", data_type=mc.TYPE_FP32, dims=[N_FEATURES])
    cfg.input.add(name="item_ids", data_type=mc.TYPE_INT64, dims=[1]).reshape.SetInParent()
    cfg.input.add(name="hist", data_type=mc.TYPE_INT64, dims=[-1])
    cfg.output.add(name="embedding", data_type=mc.TYPE_FP32, dims=[DIM])
    cfg.output.add(name="score", data_type=mc.TYPE_FP32, dims=[1]).reshape.SetInParent()
    cfg.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    cfg.dynamic_batching.preferred_batch_size.extend([MAX_BATCH])
    cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU, count=count)
    cfg.parameters["intra_op_thread_count"].string_value = "1"
    accelerator = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    accelerator.parameters["precision_mode"] = "FP16"
    warm = cfg.model_warmup.add(name="batch_max", batch_size=MAX_BATCH)
    warm.inputs["features"].MergeFrom(mc.ModelWarmup.Input(data_type=mc.TYPE_FP32, dims=[N_FEATURES], random_data=True))
    warm.inputs["item_ids"].MergeFrom(mc.ModelWarmup.Input(data_type=mc.TYPE_INT64, dims=[1], zero_data=True))
    warm.inputs["hist"].MergeFrom(mc.ModelWarmup.Input(data_type=mc.TYPE_INT64, dims=[5], zero_data=True))
    return cfg


PREP_PY = '''\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Stands in for the intent tokenizer: a Python model in front of an ONNX model, joined by an ensemble."""

    def execute(self, requests):
        out = []
        for r in requests:
            raw = pb_utils.get_input_tensor_by_name(r, "raw").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("features", (raw * 2.0).astype(np.float32))]))
        return out
'''

PREP_CONFIG = f"""
name: "prep"
backend: "python"
max_batch_size: {MAX_BATCH}
input {{ name: "raw" data_type: TYPE_FP32 dims: [{N_FEATURES}] }}
output {{ name: "features" data_type: TYPE_FP32 dims: [{N_FEATURES}] }}
instance_group {{ kind: KIND_CPU count: 1 }}
"""

ENSEMBLE_CONFIG = f"""
name: "pipeline"
platform: "ensemble"
max_batch_size: {MAX_BATCH}
input {{ name: "raw" data_type: TYPE_FP32 dims: [{N_FEATURES}] }}
input {{ name: "item_ids" data_type: TYPE_INT64 dims: [1] }}
input {{ name: "hist" data_type: TYPE_INT64 dims: [-1] }}
output {{ name: "score" data_type: TYPE_FP32 dims: [1] }}
ensemble_scheduling {{
  step {{ model_name: "prep" model_version: -1 input_map {{ key: "raw" value: "raw" }}
         output_map {{ key: "features" value: "feats" }} }}
  step {{ model_name: "tiny" model_version: -1
         input_map {{ key: "features" value: "feats" }} input_map {{ key: "item_ids" value: "item_ids" }}
         input_map {{ key: "hist" value: "hist" }} output_map {{ key: "score" value: "score" }} }}
}}
"""


def write_onnx_model(repo: Path, name: str = "tiny", versions: tuple[int, ...] = (1,), **config: object) -> Path:
    folder = repo / name
    for v in versions:
        (folder / str(v)).mkdir(parents=True, exist_ok=True)
        onnx.save(tiny_onnx(seed=v), str(folder / str(v) / "model.onnx"))
    cfg = tiny_config(name, **config)  # type: ignore[arg-type]
    (folder / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    return folder


def write_repository(repo: Path, ensemble: bool = True) -> Path:
    """tiny (ONNX, versions 1 and 2; 2 is served) and, with `ensemble`, prep (Python) + pipeline (ensemble)."""
    write_onnx_model(repo, "tiny", versions=(1, 2))
    if ensemble:
        (repo / "prep" / "1").mkdir(parents=True)
        (repo / "prep" / "1" / "model.py").write_text(PREP_PY)
        (repo / "prep" / "config.pbtxt").write_text(PREP_CONFIG)
        (repo / "pipeline" / "1").mkdir(parents=True)
        (repo / "pipeline" / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    return repo


def example(batch: int, hist_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs in the model's own shapes (item_ids [batch]); ids 0..N_IDS-1 are all valid rows of the table."""
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(size=(batch, N_FEATURES)).astype(np.float32),
        "item_ids": rng.integers(0, N_IDS, size=batch, dtype=np.int64),
        "hist": rng.integers(0, N_IDS, size=(batch, hist_len), dtype=np.int64),
    }
