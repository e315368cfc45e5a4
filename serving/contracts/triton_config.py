"""Triton `ModelConfig` messages from a resolved ModelSpec, as text and back (no onnx, no torch).

The config is built as a `model_config_pb2.ModelConfig` message and printed with text_format, so what
is written is by construction what Triton's parser reads. Export writes these messages as config.pbtxt
and checks them against the ONNX graphs (export/pbtxt.py); tests build the same configs for tiny fake
models without pulling in export.

Defaults target the NGC Triton image on a GPU (KIND_GPU); `TritonOptions(gpu=False)` is the CPU variant.
`accelerator="tensorrt"` adds the ORT TensorRT execution accelerator (FP16, engine cache, shape profiles
from the spec), `accelerator="cuda"` the CUDA EP settings; both only mean something on a GPU instance.

A [batch] tensor (spec dims `()`) is declared as dims [1] with reshape []: Triton needs at least one dim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from serving.contracts.model_specs import QUEUE_DELAY_US, ModelSpec, TensorSpec

PLATFORM = "onnxruntime_onnx"
MODEL_FILENAME = "model.onnx"
HEADER = (
    "# Written by `python -m export` from serving/contracts/model_specs.py and the checkpoint's config.\n"
    "# Change the spec (or the export options), not this file: the next export overwrites it.\n"
)
TOKENIZER_NAME = "intent_tokenizer"
ENSEMBLE_NAME = "intent_text"


class ConfigMismatch(ValueError):
    """A config.pbtxt disagrees with its ONNX graph or spec."""


@dataclass(frozen=True)
class TritonOptions:
    gpu: bool = True  # KIND_GPU (NGC image) or KIND_CPU
    instance_count: int = 1
    accelerator: str = "none"  # "none" | "cuda" | "tensorrt"
    trt_precision: str = "FP16"
    trt_cache_dir: str = "/tmp/trt_cache"  # engines are GPU-specific: a cache, never committed
    version_policy: str = "latest:1"  # "latest:N" | "all" | "specific:1,2"
    cpu_threads: int = 0  # ORT intra-op threads per instance; 0 = ORT's default

    def __post_init__(self) -> None:
        if self.accelerator not in ("none", "cuda", "tensorrt"):
            raise ValueError(f"accelerator must be none, cuda or tensorrt, not {self.accelerator!r}")
        if self.accelerator != "none" and not self.gpu:
            raise ValueError(f"the {self.accelerator} accelerator needs a GPU instance group (gpu=True)")


# ---------------------------------------------------------------------------------------------------------
# Build


def _tensor_config(t: TensorSpec, message: mc.ModelInput | mc.ModelOutput) -> None:
    message.name = t.name
    message.data_type = mc.DataType.Value(t.triton_dtype)
    if t.dims:
        message.dims.extend(int(d) for d in t.dims)  # type: ignore[arg-type]
    else:
        # A [batch] tensor: Triton needs at least one dim, so it is [1] on the wire, reshaped away for ORT.
        message.dims.append(1)
        message.reshape.SetInParent()


def config_dims(t: TensorSpec) -> list[int]:
    return [int(d) for d in t.dims] if t.dims else [1]  # type: ignore[arg-type]


def _version_policy(policy: str, message: mc.ModelVersionPolicy) -> None:
    kind, _, arg = policy.partition(":")
    if kind == "latest":
        message.latest.num_versions = int(arg or 1)
    elif kind == "all":
        message.all.SetInParent()
    elif kind == "specific" and arg:
        message.specific.versions.extend(int(v) for v in arg.split(","))
    else:
        raise ValueError(f"version policy must be latest:N, all or specific:1,2 — not {policy!r}")


def _warmup(
    spec: ModelSpec, config: Mapping[str, object], batch: int, length: int | None, message: mc.ModelWarmup
) -> None:
    """Warm-up request shaped like the spec's example inputs: zeros for ids (0 = padding is valid for every
    embedding table; random ids could index past a table), random values for float features."""
    examples = spec.example_inputs(config, 1, np.random.default_rng(0), length)
    resolved = spec.resolve(config)
    message.name = f"batch_{batch}" + (f"_{spec.seq_axis}_{length}" if length else "")
    message.batch_size = batch
    for t in resolved.inputs:
        row_dims = list(examples[t.name].shape[1:]) or [1]
        inp = message.inputs[t.name]
        inp.data_type = mc.DataType.Value(t.triton_dtype)
        inp.dims.extend(row_dims)
        if np.issubdtype(np.dtype(t.dtype), np.floating):
            inp.random_data = True
        else:
            inp.zero_data = True


def _trt_profiles(spec: ModelSpec, config: Mapping[str, object]) -> dict[str, str]:
    """TensorRT optimisation profile (min / opt / max shapes) from the spec, so engines cover every request."""
    top = spec.max_length(config) or 1
    opt_batch = max(spec.preferred_batch_sizes or (max(1, spec.max_batch_size // 2),))

    def shapes(batch: int, length: int) -> str:
        return ",".join(f"{t.name}:" + "x".join(str(d) for d in t.batched_shape(batch, length)) for t in spec.inputs)

    return {
        "trt_profile_min_shapes": shapes(1, 1),
        "trt_profile_opt_shapes": shapes(opt_batch, top),
        "trt_profile_max_shapes": shapes(spec.max_batch_size, top),
    }


def build_config(spec: ModelSpec, config: Mapping[str, object], options: TritonOptions | None = None) -> mc.ModelConfig:
    """The ModelConfig message for a spec, resolved against a checkpoint config."""
    opts = options or TritonOptions()
    resolved = spec.resolve(config)
    cfg = mc.ModelConfig(name=spec.name, platform=PLATFORM, max_batch_size=spec.max_batch_size)
    cfg.default_model_filename = MODEL_FILENAME
    _version_policy(opts.version_policy, cfg.version_policy)
    for t in resolved.inputs:
        _tensor_config(t, cfg.input.add())
    for t in resolved.outputs:
        _tensor_config(t, cfg.output.add())

    batching = cfg.dynamic_batching
    batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    batching.preferred_batch_size.extend(b for b in spec.preferred_batch_sizes if b <= spec.max_batch_size)

    group = cfg.instance_group.add()
    group.kind = mc.ModelInstanceGroup.Kind.Value("KIND_GPU" if opts.gpu else "KIND_CPU")
    group.count = opts.instance_count
    if opts.cpu_threads:
        cfg.parameters["intra_op_thread_count"].string_value = str(opts.cpu_threads)

    # Warm up the smallest and the largest request Triton will build, at the longest sequence: first real
    # requests then find allocated arenas (and, with TensorRT, built engines).
    top = resolved.seq_max if isinstance(resolved.seq_max, int) else None
    _warmup(spec, config, 1, top, cfg.model_warmup.add())
    _warmup(spec, config, spec.max_batch_size, top, cfg.model_warmup.add())

    if opts.accelerator != "none":
        acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add()
        acc.name = opts.accelerator
        if opts.accelerator == "tensorrt":
            acc.parameters["precision_mode"] = opts.trt_precision
            acc.parameters["max_workspace_size_bytes"] = str(2 << 30)
            acc.parameters["trt_engine_cache_enable"] = "1"
            acc.parameters["trt_engine_cache_path"] = f"{opts.trt_cache_dir}/{spec.name}"
            acc.parameters.update(_trt_profiles(resolved, config))
        else:
            # Heuristic conv search: exhaustive search costs seconds per new shape, and shapes vary here.
            acc.parameters["cudnn_conv_algo_search"] = "1"
            acc.parameters["do_copy_in_default_stream"] = "1"
    return cfg


# ---------------------------------------------------------------------------------------------------------
# Raw-text intent: Python-backend tokenizer + ensemble (tokenizer -> BERT)


def build_tokenizer_config(max_len: int, max_batch_size: int, options: TritonOptions | None = None) -> mc.ModelConfig:
    """The Python-backend tokenizer (export/triton_tokenizer.py). Always KIND_CPU: tokenising is CPU work."""
    opts = options or TritonOptions()
    cfg = mc.ModelConfig(name=TOKENIZER_NAME, backend="python", max_batch_size=max_batch_size)
    _version_policy(opts.version_policy, cfg.version_policy)
    text = cfg.input.add(name="text", data_type=mc.DataType.Value("TYPE_STRING"))
    text.dims.append(1)
    for name in ("input_ids", "attention_mask"):
        out = cfg.output.add(name=name, data_type=mc.DataType.Value("TYPE_INT64"))
        out.dims.append(-1)
    cfg.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    group = cfg.instance_group.add()
    group.kind = mc.ModelInstanceGroup.Kind.Value("KIND_CPU")
    group.count = opts.instance_count
    cfg.parameters["max_len"].string_value = str(max_len)
    return cfg


def build_ensemble_config(bert: ModelSpec) -> mc.ModelConfig:
    """text -> intent_tokenizer -> <bert> -> logits, probs; `bert` is the resolved intent spec."""
    cfg = mc.ModelConfig(name=ENSEMBLE_NAME, platform="ensemble", max_batch_size=bert.max_batch_size)
    text = cfg.input.add(name="text", data_type=mc.DataType.Value("TYPE_STRING"))
    text.dims.append(1)
    for t in bert.outputs:
        _tensor_config(t, cfg.output.add())
    tok = cfg.ensemble_scheduling.step.add(model_name=TOKENIZER_NAME, model_version=-1)
    tok.input_map["text"] = "text"
    model = cfg.ensemble_scheduling.step.add(model_name=bert.name, model_version=-1)
    for t in bert.inputs:
        tok.output_map[t.name] = f"_{t.name}"  # ensemble-internal tensor names
        model.input_map[t.name] = f"_{t.name}"
    for t in bert.outputs:
        model.output_map[t.name] = t.name
    return cfg


# ---------------------------------------------------------------------------------------------------------
# Text


def config_text(cfg: mc.ModelConfig, header: str = HEADER) -> str:
    """config.pbtxt text of a message: `header` (comment lines) + text_format."""
    return header + text_format.MessageToString(cfg)


def parse_config_text(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt text with Triton's protobuf (raises text_format.ParseError naming line and column)."""
    return text_format.Parse(text, mc.ModelConfig())


def parse_config(path: str | Path) -> mc.ModelConfig:
    """Parse a config.pbtxt file (see parse_config_text)."""
    return parse_config_text(Path(path).read_text())


# ---------------------------------------------------------------------------------------------------------
# Checks that need no graph (export/pbtxt.py `check_config` adds the ONNX graph's)


def config_problems(cfg: mc.ModelConfig, spec: ModelSpec | None = None) -> list[str]:
    """What is wrong with a config on its own (and against the resolved spec when given): platform, dynamic
    batching settings, warm-up inputs, and the spec's name, batching, tensor names, dtypes and dims."""
    problems: list[str] = []
    if cfg.platform != PLATFORM and cfg.backend != "onnxruntime":
        problems.append(f"platform {cfg.platform!r} is not {PLATFORM!r}")
    if cfg.max_batch_size > 0 and not cfg.HasField("dynamic_batching"):
        problems.append("max_batch_size > 0 but no dynamic_batching")
    for b in cfg.dynamic_batching.preferred_batch_size:
        if b > cfg.max_batch_size:
            problems.append(f"preferred batch size {b} > max_batch_size {cfg.max_batch_size}")
    problems += _warmup_problems(cfg)
    if spec is not None:
        problems += _spec_problems(cfg, spec)
    return problems


def _warmup_problems(cfg: mc.ModelConfig) -> list[str]:
    problems = []
    inputs = {t.name: t for t in cfg.input}
    for w in cfg.model_warmup:
        if set(w.inputs) != set(inputs):
            problems.append(f"warm-up {w.name!r} inputs {sorted(w.inputs)} != config inputs {sorted(inputs)}")
            continue
        if cfg.max_batch_size > 0 and not 1 <= w.batch_size <= cfg.max_batch_size:
            problems.append(f"warm-up {w.name!r} batch {w.batch_size} outside 1..{cfg.max_batch_size}")
        for name, wi in w.inputs.items():
            t = inputs[name]
            ok = len(wi.dims) == len(t.dims) and all(
                c in (-1, d) and d > 0 for c, d in zip(t.dims, wi.dims, strict=True)
            )
            if wi.data_type != t.data_type or not ok:
                problems.append(
                    f"warm-up {w.name!r} input {name!r} {mc.DataType.Name(wi.data_type)}{list(wi.dims)} "
                    f"does not fit {mc.DataType.Name(t.data_type)}{list(t.dims)}"
                )
            if wi.WhichOneof("input_data_type") is None:
                problems.append(f"warm-up {w.name!r} input {name!r} has no data source")
    return problems


def _spec_problems(cfg: mc.ModelConfig, spec: ModelSpec) -> list[str]:
    problems = []
    if cfg.name != spec.name:
        problems.append(f"name {cfg.name!r} != spec {spec.name!r}")
    if cfg.max_batch_size != spec.max_batch_size:
        problems.append(f"max_batch_size {cfg.max_batch_size} != spec {spec.max_batch_size}")
    if cfg.dynamic_batching.max_queue_delay_microseconds != spec.max_queue_delay_us:
        delay = cfg.dynamic_batching.max_queue_delay_microseconds
        problems.append(f"max_queue_delay_microseconds {delay} != spec {spec.max_queue_delay_us}")
    for kind, tensors, specs in (("input", cfg.input, spec.inputs), ("output", cfg.output, spec.outputs)):
        by_name = {t.name: t for t in tensors}
        for s in specs:
            t = by_name.get(s.name)
            if t is None:
                problems.append(f"spec {kind} {s.name!r} missing from the config")
            elif list(t.dims) != config_dims(s) or mc.DataType.Name(t.data_type) != s.triton_dtype:
                found = f"{mc.DataType.Name(t.data_type)}{list(t.dims)}"
                problems.append(f"{kind} {s.name!r} {found} != spec {s.triton_dtype}{config_dims(s)}")
    return problems


def check_ensemble(cfg: mc.ModelConfig, repo: str | Path) -> None:
    """Every step's model exists in `repo`, its map keys are that model's tensors, and every step input and
    ensemble output is produced by the ensemble's inputs or an earlier step."""
    problems = []
    available = {t.name for t in cfg.input}
    for step in cfg.ensemble_scheduling.step:
        path = Path(repo) / step.model_name / "config.pbtxt"
        if not path.is_file():
            problems.append(f"step model {step.model_name!r} has no {path}")
            continue
        model = parse_config(path)
        ins, outs = {t.name for t in model.input}, {t.name for t in model.output}
        problems += [f"{step.model_name}: no input {k!r}" for k in step.input_map if k not in ins]
        problems += [f"{step.model_name}: no output {k!r}" for k in step.output_map if k not in outs]
        problems += [
            f"{step.model_name}: input from {v!r}, produced by nothing before it"
            for v in step.input_map.values()
            if v not in available
        ]
        problems += [f"{step.model_name}: input {k!r} not mapped" for k in ins if k not in step.input_map]
        available |= set(step.output_map.values())
    problems += [f"ensemble output {t.name!r} produced by no step" for t in cfg.output if t.name not in available]
    if problems:
        raise ConfigMismatch(f"ensemble {cfg.name!r}: " + "; ".join(problems))
