"""PyTorch module -> ONNX file named and shaped by its ModelSpec, proven equal to PyTorch with ONNX Runtime.

The module given to `export_onnx` takes the resolved spec's inputs positionally, in spec order, and
returns its outputs in spec order (one tensor or a tuple); export/models.py builds such wrappers.

Exporters: torch.export-based ("dynamo") first, the TorchScript tracer as fallback; the one used is
recorded. Parity runs ONNX Runtime on the CPU execution provider against PyTorch at batch sizes other
than the export batch and at several sequence lengths, and raises `ParityError` with the worst error.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from serving.contracts.model_specs import ModelSpec, TensorSpec

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18  # ORT >= 1.14: every Triton ORT backend of the last years loads it; dynamo's native opset
EXPORT_BATCH = 2  # traced batch; parity then runs at other sizes (1 and >2 catch a baked-in batch)
PARITY_BATCHES = (1, 3, 64)
ONNX_DTYPES = {
    "float32": onnx.TensorProto.FLOAT,
    "float16": onnx.TensorProto.FLOAT16,
    "int64": onnx.TensorProto.INT64,
    "int32": onnx.TensorProto.INT32,
    "bool": onnx.TensorProto.BOOL,
    "object": onnx.TensorProto.STRING,
}


class GraphMismatch(ValueError):
    """The ONNX graph's inputs/outputs do not match the spec (names, dtypes, ranks, fixed dims)."""


class ParityError(AssertionError):
    """ONNX Runtime output differs from PyTorch beyond the spec's tolerance."""


@dataclass
class ExportResult:
    path: Path
    exporter: str  # "dynamo" | "torchscript"
    opset: int
    seconds: float
    fallback_reason: str = ""


@dataclass
class ParityCase:
    batch: int
    length: int | None
    max_abs_err: dict[str, float]  # per output


@dataclass
class ParityReport:
    model: str
    atol: float
    rtol: float
    cases: list[ParityCase] = field(default_factory=list)

    @property
    def max_abs_err(self) -> float:
        return max((e for c in self.cases for e in c.max_abs_err.values()), default=0.0)

    def as_dict(self) -> dict[str, object]:
        return {
            "max_abs_err": self.max_abs_err,
            "atol": self.atol,
            "rtol": self.rtol,
            "batches": sorted({c.batch for c in self.cases}),
            "lengths": sorted({c.length for c in self.cases if c.length is not None}),
            "cases": len(self.cases),
        }


# ---------------------------------------------------------------------------------------------------------
# Export


def export_length(spec: ModelSpec, config: Mapping[str, object]) -> int | None:
    """Sequence length to trace at: >= 2 (torch.export specialises sizes 0 and 1) and within the maximum."""
    limit = spec.max_length(config)
    return None if limit is None else max(2, min(limit, 5))


def _dynamic_shapes(spec: ModelSpec, seq_max: int | None) -> tuple[dict[int, object], ...]:
    """One torch.export Dim per axis name, shared between tensors, e.g. both history inputs use "hist"."""
    dims: dict[str, object] = {}

    def dim(name: str) -> object:
        if name not in dims:
            top = seq_max if name == spec.seq_axis and seq_max else None
            dims[name] = torch.export.Dim(name, min=1, max=top) if top else torch.export.Dim(name, min=1)
        return dims[name]

    return tuple({axis: dim(name) for axis, name in t.dynamic_axes.items()} for t in spec.inputs)


def _torch_inputs(arrays: Mapping[str, np.ndarray], spec: ModelSpec) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(arrays[n])) for n in spec.input_names)


def export_onnx(
    module: torch.nn.Module,
    spec: ModelSpec,
    config: Mapping[str, object],
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    seed: int = 0,
) -> ExportResult:
    """Export `module` to `path` with the spec's names and dynamic axes, then onnx.checker and a graph check.

    exporter: "dynamo", "torchscript" or "auto" (dynamo, falling back to torchscript on any failure).
    """
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"exporter must be auto, dynamo or torchscript, not {exporter!r}")
    resolved = spec.resolve(config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    length = export_length(spec, config)
    args = _torch_inputs(spec.example_inputs(config, EXPORT_BATCH, np.random.default_rng(seed), length), resolved)

    reason = ""
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    for i, name in enumerate(order):
        t0 = time.perf_counter()
        try:
            _run_exporter(name, module, args, resolved, path, opset)
            model = onnx.load(str(path))
            if name == "torchscript":
                model = _pin_fixed_dims(model, resolved)
                onnx.save(model, str(path))
            onnx.checker.check_model(model, full_check=True)
            check_graph(model, resolved)
        except Exception as exc:  # every exporter failure is worth a second exporter before giving up
            if i == len(order) - 1:
                raise RuntimeError(f"{spec.name}: ONNX export failed with the {name} exporter: {exc}") from exc
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            log.warning("%s: %s exporter failed (%s); falling back", spec.name, name, reason)
            continue
        return ExportResult(path, name, opset, time.perf_counter() - t0, reason)
    raise AssertionError("unreachable")


def _run_exporter(
    name: str, module: torch.nn.Module, args: tuple[torch.Tensor, ...], spec: ModelSpec, path: Path, opset: int
) -> None:
    # Both exporters are chatty (warnings, progress prints, a torchvision notice); keep the CLI's output readable.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        if name == "dynamo":
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=spec.input_names,
                output_names=spec.output_names,
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=_dynamic_shapes(spec, spec.seq_max if isinstance(spec.seq_max, int) else None),
                external_data=False,
                optimize=True,
                verbose=False,
            )
        else:
            axes = {t.name: t.dynamic_axes for t in (*spec.inputs, *spec.outputs)}
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=spec.input_names,
                output_names=spec.output_names,
                opset_version=opset,
                dynamo=False,
                dynamic_axes=axes,
                do_constant_folding=True,
            )


def _pin_fixed_dims(model: onnx.ModelProto, spec: ModelSpec) -> onnx.ModelProto:
    """Write the spec's fixed output dims where the TorchScript tracer left a symbol (e.g. after F.normalize).

    Only fills in what shape inference missed; a dim the graph fixed differently is left for check_graph to
    report, and parity then proves the real output shapes."""
    specs = {t.name: t for t in spec.outputs}
    for value in model.graph.output:
        t = specs.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if t is None or len(dims) != 1 + len(t.dims):
            continue
        for d, s in zip(list(dims)[1:], t.dims, strict=True):
            if s != -1 and not d.HasField("dim_value"):
                d.dim_value = int(s)
    return model


# ---------------------------------------------------------------------------------------------------------
# Graph <-> spec


def graph_tensors(model: onnx.ModelProto) -> tuple[dict[str, onnx.ValueInfoProto], dict[str, onnx.ValueInfoProto]]:
    """Real graph inputs (initializers excluded) and outputs, by name."""
    inits = {i.name for i in model.graph.initializer}
    inputs = {v.name: v for v in model.graph.input if v.name not in inits}
    return inputs, {v.name: v for v in model.graph.output}


def graph_dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """Dims of a graph tensor: int when fixed, the symbol (or "?") when dynamic."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def check_graph(model: onnx.ModelProto | str | Path, spec: ModelSpec) -> None:
    """Raise GraphMismatch listing every difference between the graph's signature and the resolved spec."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    inputs, outputs = graph_tensors(model)
    problems: list[str] = []
    for kind, specs, graph in (("input", spec.inputs, inputs), ("output", spec.outputs, outputs)):
        if set(graph) != {t.name for t in specs}:
            problems.append(f"{kind} names {sorted(graph)} != spec {sorted(t.name for t in specs)}")
        problems += [p for t in specs if t.name in graph for p in _tensor_problems(kind, t, graph[t.name])]
    if problems:
        raise GraphMismatch(f"{spec.name}: ONNX graph does not match its spec: " + "; ".join(problems))


def _tensor_problems(kind: str, t: TensorSpec, value: onnx.ValueInfoProto) -> list[str]:
    where = f"{kind} {t.name!r}"
    elem = value.type.tensor_type.elem_type
    problems = []
    if elem != ONNX_DTYPES[t.dtype]:
        problems.append(f"{where} dtype {onnx.TensorProto.DataType.Name(elem)} != spec {t.dtype}")
    dims = graph_dims(value)
    if len(dims) != 1 + len(t.dims):
        return [*problems, f"{where} rank {len(dims)} != spec {1 + len(t.dims)} (batch + {list(t.dims)})"]
    if isinstance(dims[0], int):
        problems.append(f"{where} batch dim is fixed at {dims[0]}, not dynamic")
    for i, (g, s) in enumerate(zip(dims[1:], t.dims, strict=True), start=1):
        if s == -1 and isinstance(g, int):
            problems.append(f"{where} dim {i} is fixed at {g} but the spec has it dynamic")
        elif s != -1 and g != s:
            problems.append(f"{where} dim {i} is {g} but the spec says {s}")
    return problems


# ---------------------------------------------------------------------------------------------------------
# ONNX Runtime sessions, parity, latency


def preferred_providers(tensorrt: bool = False) -> list[str]:
    """TensorRT (when asked) > CUDA > CPU, among the execution providers this onnxruntime build has."""
    available = ort.get_available_providers()
    wanted = (["TensorrtExecutionProvider"] if tensorrt else []) + ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available]


def ort_session(path: str | Path, providers: Sequence[str] | None = None, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # 0 = ORT's default (one per core)
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=list(providers or ["CPUExecutionProvider"]))


@torch.no_grad()
def _torch_outputs(module: torch.nn.Module, spec: ModelSpec, arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    out = module(*_torch_inputs(arrays, spec))
    out = out if isinstance(out, tuple | list) else (out,)
    return [o.detach().cpu().numpy() for o in out]


def check_parity(
    module: torch.nn.Module,
    spec: ModelSpec,
    config: Mapping[str, object],
    path: str | Path,
    batches: Sequence[int] = PARITY_BATCHES,
    lengths: Sequence[int] | None = None,
    seed: int = 1,
    session: ort.InferenceSession | None = None,
) -> ParityReport:
    """Compare ONNX Runtime with PyTorch on fresh example inputs at every (batch, length); raise on failure."""
    resolved = spec.resolve(config)
    module = module.eval()
    session = session or ort_session(path)
    lens: Sequence[int | None] = (lengths or resolved.parity_lengths or [None]) if spec.seq_axis else [None]
    report = ParityReport(spec.name, spec.atol, spec.rtol)
    rng = np.random.default_rng(seed)
    failures = []
    for batch in batches:
        for length in lens:
            arrays = spec.example_inputs(config, batch, rng, length)
            want = _torch_outputs(module, resolved, arrays)
            got = session.run(resolved.output_names, arrays)
            errs = {}
            for name, w, g in zip(resolved.output_names, want, got, strict=True):
                if w.shape != g.shape:
                    failures.append(f"output {name!r} shape {list(g.shape)} != PyTorch {list(w.shape)}")
                    continue
                errs[name] = float(np.max(np.abs(w.astype(np.float64) - g))) if w.size else 0.0
                if not np.allclose(g, w, atol=spec.atol, rtol=spec.rtol, equal_nan=False):
                    where = f"batch {batch}, length {length}"
                    failures.append(f"output {name!r} at {where}: max abs error {errs[name]:.3g}")
            report.cases.append(ParityCase(batch, length, errs))
    if failures:
        raise ParityError(
            f"{spec.name}: ONNX Runtime differs from PyTorch beyond atol={spec.atol}, rtol={spec.rtol} "
            f"(max abs error {report.max_abs_err:.3g}): " + "; ".join(failures[:5])
        )
    return report


def measure_latency(
    session: ort.InferenceSession,
    spec: ModelSpec,
    config: Mapping[str, object],
    batches: Sequence[int],
    length: int | None = None,
    repeats: int = 30,
    budget_s: float = 3.0,
    seed: int = 2,
) -> dict[str, dict[str, float]]:
    """Median and p90 ms per batch size, at sequence `length` (default: the model's maximum, the worst case).

    Stops a batch size after `budget_s` seconds (at least 3 timed runs), so large models stay affordable."""
    rng = np.random.default_rng(seed)
    names = spec.resolve(config).output_names
    length = length or spec.max_length(config)
    out = {}
    for batch in batches:
        arrays = spec.example_inputs(config, batch, rng, length)
        session.run(names, arrays)  # warm-up: the first run allocates
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
            t0 = time.perf_counter()
            session.run(names, arrays)
            times.append((time.perf_counter() - t0) * 1e3)
        out[str(batch)] = {
            "p50_ms": round(float(np.median(times)), 3),
            "p90_ms": round(float(np.percentile(times, 90)), 3),
            "runs": len(times),
        }
    return out


# ---------------------------------------------------------------------------------------------------------
# int8


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantisation of the MatMul/Gemm weights (activations quantised at run time).

    For transformer encoders on CPU this is the usual speed-for-accuracy trade: weights shrink 4x and
    VNNI/AVX512 int8 kernels do the matrix products. Accuracy and speed are measured by the caller.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    prepared = dst.with_suffix(".pre.onnx")
    try:
        # ONNX shape inference + graph cleanup first: the quantiser needs shapes to pick what it can quantise.
        # ORT's symbolic shape inference is skipped: it gives up on dynamo's BERT graph (and leaves a temp
        # file in the working directory when it does).
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(dst),
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    finally:
        prepared.unlink(missing_ok=True)
    onnx.checker.check_model(onnx.load(str(dst)), full_check=True)
    return dst
