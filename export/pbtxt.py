"""config.pbtxt files: written from a resolved ModelSpec, parsed back with Triton's own protobuf and checked.

The messages come from serving/contracts/triton_config.py (no onnx there, so tests and serving can build
the same configs). Here they are written into the model repository, and `check_config` cross-checks a
parsed config against the ONNX graph it serves: names, dtypes, dims and the batch dimension, on top of
the graph-free checks of `triton_config.config_problems`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import onnx
from tritonclient.grpc import model_config_pb2 as mc

from export.onnx_export import ONNX_DTYPES, graph_dims, graph_tensors
from serving.contracts.model_specs import TRITON_DTYPES, ModelSpec
from serving.contracts.triton_config import (
    ConfigMismatch,
    TritonOptions,
    build_config,
    config_problems,
    config_text,
    parse_config,
)

_ONNX_TO_TRITON = {ONNX_DTYPES[k]: v for k, v in TRITON_DTYPES.items()}


# ---------------------------------------------------------------------------------------------------------
# Write


def write_message(cfg: mc.ModelConfig, repo: str | Path) -> Path:
    """Write <repo>/<cfg.name>/config.pbtxt and check it parses back to the same message."""
    path = Path(repo) / cfg.name / "config.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(cfg))
    if parse_config(path) != cfg:
        raise ConfigMismatch(f"{path}: does not parse back to the config that was written")
    return path


def write_config(
    spec: ModelSpec, config: Mapping[str, object], repo: str | Path, options: TritonOptions | None = None
) -> Path:
    """Write <repo>/<model>/config.pbtxt for a spec and check it parses back to the same message."""
    return write_message(build_config(spec, config, options), repo)


# ---------------------------------------------------------------------------------------------------------
# Check against the ONNX graph


def check_config(cfg: mc.ModelConfig, model: onnx.ModelProto | str | Path, spec: ModelSpec | None = None) -> None:
    """Cross-check a parsed config against the ONNX graph (and the resolved spec when given).

    Raises ConfigMismatch listing every problem: tensor names, dtypes, dims after reshape vs graph dims,
    a dynamic batch dim when max_batch_size > 0, and those of `config_problems` (warm-up inputs, dynamic
    batching settings, the spec).
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    graph_in, graph_out = graph_tensors(model)
    problems: list[str] = []
    for kind, tensors, graph in (("input", cfg.input, graph_in), ("output", cfg.output, graph_out)):
        names = [t.name for t in tensors]
        if sorted(names) != sorted(graph):
            problems.append(f"{kind} names {sorted(names)} != ONNX graph {sorted(graph)}")
        for t in tensors:
            if t.name in graph:
                problems += _tensor_vs_graph(kind, t, graph[t.name], cfg.max_batch_size > 0)
    problems += config_problems(cfg, spec)
    if problems:
        raise ConfigMismatch(f"config of {cfg.name!r}: " + "; ".join(problems))


def _tensor_vs_graph(
    kind: str, t: mc.ModelInput | mc.ModelOutput, value: onnx.ValueInfoProto, batched: bool
) -> list[str]:
    where = f"{kind} {t.name!r}"
    problems = []
    want_type = _ONNX_TO_TRITON.get(value.type.tensor_type.elem_type, "?")
    if mc.DataType.Name(t.data_type) != want_type:
        problems.append(f"{where} {mc.DataType.Name(t.data_type)} but the ONNX graph has {want_type}")
    dims = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
    gdims = graph_dims(value)
    if batched:
        if not gdims or isinstance(gdims[0], int):
            return [*problems, f"{where} has no dynamic batch dim in the ONNX graph ({gdims})"]
        gdims = gdims[1:]
    if len(dims) != len(gdims):
        return [*problems, f"{where} dims {dims} (after reshape) vs ONNX {gdims}: rank differs"]
    for i, (c, g) in enumerate(zip(dims, gdims, strict=True)):
        if c == -1 and isinstance(g, int):
            problems.append(f"{where} dim {i} is -1 but fixed at {g} in the ONNX graph")
        elif c != -1 and c != g:
            problems.append(f"{where} dim {i} is {c} but {g} in the ONNX graph")
    return problems
