"""Triton Python-backend model that serves one ONNX file with ONNX Runtime (the local, pip-installed server).

`serving.triton.view` copies this file as `<model>/<version>/model.py` next to a link to the original
`model.onnx`, under a config that keeps the ONNX model's name, tensors, batching and instance count. It runs
inside Triton's Python stub, so it imports only numpy, onnxruntime and the stub's `triton_python_backend_utils`.

Batching: Triton's dynamic batcher hands `execute` several requests at once. Requests whose non-batch shapes
are equal (same history / token length) are concatenated and run in ONE ONNX Runtime call, then split back.
Requests with other shapes run as their own group: padding them to a common length is NOT done because what
padding means is model-specific (a mask, a length input, or nothing), and a wrong guess changes the answers.
If a group's call fails (an id out of range in one request, tensors with inconsistent lengths), its requests
are re-run one by one so only the bad ones get an error response.

Config parameters read (string values): `onnx_file` (file name in the version folder, default model.onnx),
`intra_op_thread_count` and `inter_op_thread_count` (the same names the ORT backend uses; 0 = ORT's default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:  # only the stub has it; the pure helpers below stay importable (and testable) without Triton
    import triton_python_backend_utils as pb_utils
except ImportError:
    pb_utils = None

_NUMPY = {
    "TYPE_BOOL": "bool",
    "TYPE_UINT8": "uint8",
    "TYPE_INT8": "int8",
    "TYPE_INT16": "int16",
    "TYPE_INT32": "int32",
    "TYPE_INT64": "int64",
    "TYPE_FP16": "float16",
    "TYPE_FP32": "float32",
    "TYPE_FP64": "float64",
    "TYPE_STRING": "object",
}


def group_by_shape(shapes: Sequence[Mapping[str, tuple[int, ...]]]) -> list[list[int]]:
    """Indices of requests that can share one ORT call: equal non-batch shapes for every input, in arrival order."""
    groups: dict[tuple, list[int]] = {}
    for i, by_name in enumerate(shapes):
        key = tuple(sorted((name, shape[1:]) for name, shape in by_name.items()))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def split_rows(outputs: Mapping[str, np.ndarray], sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Cut batched outputs back into per-request pieces along the batch axis."""
    bounds = np.cumsum(sizes)[:-1]
    pieces = {name: np.split(a, bounds) for name, a in outputs.items()}
    return [{name: parts[i] for name, parts in pieces.items()} for i in range(len(sizes))]


def _parameter(config: Mapping[str, Any], key: str, default: str) -> str:
    value = (config.get("parameters") or {}).get(key, {}).get("string_value")
    return value if value else default


class TritonPythonModel:
    """One ORT session per model instance (Triton starts one stub process per instance)."""

    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime as ort  # here, not at the top: importing this file for tests must not need ORT

        self._ort = ort
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.batched = int(config.get("max_batch_size", 0)) > 0
        folder = Path(args["model_repository"]) / args["model_version"]
        path = folder / _parameter(config, "onnx_file", "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_parameter(config, "intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(_parameter(config, "inter_op_thread_count", "0"))
        options.log_severity_level = 3  # errors only: initialiser warnings would flood Triton's log
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = {t["name"]: _NUMPY.get(t["data_type"], "float32") for t in config["output"]}
        self._check_graph(path)

    def _check_graph(self, path: Path) -> None:
        """Fail the model load (and so readiness, naming this model) when the graph and the config disagree."""
        graph_in = {i.name for i in self.session.get_inputs()}
        graph_out = {o.name for o in self.session.get_outputs()}
        problems = []
        if graph_in != set(self.inputs):
            problems.append(f"inputs: graph {sorted(graph_in)}, config {sorted(self.inputs)}")
        if missing := sorted(set(self.outputs) - graph_out):
            problems.append(f"outputs {missing} are not in the graph (it has {sorted(graph_out)})")
        if problems:
            raise ValueError(f"{self.name}: {path} disagrees with config.pbtxt: " + "; ".join(problems))

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = list(self.outputs)
        arrays = self.session.run(names, feeds)
        return {n: np.ascontiguousarray(a, dtype=self.outputs[n]) for n, a in zip(names, arrays, strict=True)}

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs} for r in requests]
        results: list[dict[str, np.ndarray] | Exception] = [RuntimeError("not run")] * len(requests)
        groups = group_by_shape([{n: a.shape for n, a in f.items()} for f in feeds]) if self.batched else None
        for group in groups or [[i] for i in range(len(requests))]:
            if len(group) == 1:
                results[group[0]] = self._run_one(feeds[group[0]])
                continue
            try:
                batch = {n: np.concatenate([feeds[i][n] for i in group]) for n in self.inputs}
                parts = split_rows(self._run(batch), [len(feeds[i][self.inputs[0]]) for i in group])
                for i, part in zip(group, parts, strict=True):
                    results[i] = part
            except Exception:  # one bad request must not fail its neighbours: retry alone
                for i in group:
                    results[i] = self._run_one(feeds[i])
        return [self._response(r) for r in results]

    def _run_one(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | Exception:
        try:
            return self._run(feeds)
        except Exception as exc:  # returned, not raised: it becomes this request's error response
            return exc

    def _response(self, result: dict[str, np.ndarray] | Exception) -> Any:
        if isinstance(result, Exception):
            # ORT's InvalidArgument and Fail come from the values sent (ids out of range, lengths that disagree):
            # Triton has already checked names, dtypes and dims against the config before we see a request.
            client_fault = type(result).__name__ in ("InvalidArgument", "Fail")
            code = pb_utils.TritonError.INVALID_ARG if client_fault else pb_utils.TritonError.INTERNAL
            message = f"{self.name}: {type(result).__name__}: {result}"
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in result.items()])

    def finalize(self) -> None:
        self.session = None
