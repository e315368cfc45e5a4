"""Reading a Triton model repository: config.pbtxt (with Triton's own protobuf) -> ModelInfo, versions, warm-up.

Layout (what export writes and Triton loads):  <repo>/<model>/config.pbtxt  and  <repo>/<model>/<version>/model.onnx

`model_info` works on a parsed `ModelConfig`, so the Triton backend can feed it the config the server
reports and get the same ModelInfo the embedded backend builds from disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from serving.contracts.errors import RepositoryError
from serving.contracts.triton_config import MODEL_FILENAME, PLATFORM, parse_config_text
from serving.runtime.backends.base import ModelInfo, TensorInfo

CONFIG_NAME = "config.pbtxt"
ONNX_PLATFORMS = (PLATFORM,)
ONNX_BACKENDS = ("onnxruntime",)

# Triton config dtype -> numpy dtype name (the inverse of model_specs.TRITON_DTYPES, plus a few more).
NUMPY_DTYPES = {
    "TYPE_FP32": "float32",
    "TYPE_FP16": "float16",
    "TYPE_FP64": "float64",
    "TYPE_INT64": "int64",
    "TYPE_INT32": "int32",
    "TYPE_INT8": "int8",
    "TYPE_UINT8": "uint8",
    "TYPE_BOOL": "bool",
    "TYPE_STRING": "object",
}


def parse_config(path: str | Path) -> mc.ModelConfig:
    """Parse one config.pbtxt; a syntax error names the file, line and column."""
    path = Path(path)
    try:
        return parse_config_text(path.read_text())
    except text_format.ParseError as exc:
        raise RepositoryError(f"{path}: not a valid Triton model config ({exc})") from exc


def is_onnx_model(cfg: mc.ModelConfig) -> bool:
    return cfg.platform in ONNX_PLATFORMS or cfg.backend in ONNX_BACKENDS


def list_models(repo: str | Path) -> dict[str, mc.ModelConfig]:
    """Every model folder with a config.pbtxt -> its parsed config (ensembles and Python models included)."""
    repo = Path(repo)
    if not repo.is_dir():
        return {}
    out = {}
    for cfg_path in sorted(repo.glob(f"*/{CONFIG_NAME}")):
        cfg = parse_config(cfg_path)
        name = cfg.name or cfg_path.parent.name
        if name != cfg_path.parent.name:
            raise RepositoryError(
                f"{cfg_path}: config name {cfg.name!r} differs from its folder {cfg_path.parent.name!r}"
            )
        out[name] = cfg
    return out


def model_file(repo: str | Path, cfg: mc.ModelConfig, version: int) -> Path:
    return Path(repo) / cfg.name / str(version) / (cfg.default_model_filename or MODEL_FILENAME)


def available_versions(repo: str | Path, cfg: mc.ModelConfig) -> list[int]:
    """Numeric version folders that hold the model file, ascending."""
    folder = Path(repo) / cfg.name
    versions = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    return sorted(v for v in versions if model_file(repo, cfg, v).is_file())


def choose_version(repo: str | Path, cfg: mc.ModelConfig, pin: int | None = None) -> int:
    """The version to serve: `pin` when given, else the newest one the config's version policy allows.

    The embedded backend serves one version per model; with `latest: N` or `all` that is the newest.
    """
    versions = available_versions(repo, cfg)
    policy = cfg.version_policy.WhichOneof("policy_choice")
    if policy == "specific":
        versions = [v for v in versions if v in set(cfg.version_policy.specific.versions)]
    if pin is not None:
        if pin not in versions:
            raise RepositoryError(f"{cfg.name}: version {pin} is not in the repository (have {versions or 'none'})")
        return pin
    if not versions:
        raise RepositoryError(f"{cfg.name}: no version folder with {cfg.default_model_filename or MODEL_FILENAME}")
    return versions[-1]


def _tensor(t: mc.ModelInput | mc.ModelOutput) -> TensorInfo:
    dtype = NUMPY_DTYPES.get(mc.DataType.Name(t.data_type))
    if dtype is None:
        raise RepositoryError(f"tensor {t.name}: unsupported data type {mc.DataType.Name(t.data_type)}")
    dims = tuple(int(d) for d in t.dims)
    if t.HasField("reshape"):
        return TensorInfo(t.name, dtype, tuple(int(d) for d in t.reshape.shape), wire_dims=dims)
    return TensorInfo(t.name, dtype, dims)


def model_info(cfg: mc.ModelConfig, version: int, **extra: object) -> ModelInfo:
    """ModelInfo from a parsed config (`extra`: sha256, path, providers)."""
    inputs = tuple(_tensor(t) for t in cfg.input)
    info = ModelInfo(
        name=cfg.name,
        version=version,
        inputs=inputs,
        outputs=tuple(_tensor(t) for t in cfg.output),
        max_batch_size=int(cfg.max_batch_size),
        max_queue_delay_us=int(cfg.dynamic_batching.max_queue_delay_microseconds),
        preferred_batch_sizes=tuple(int(b) for b in cfg.dynamic_batching.preferred_batch_size),
        platform=cfg.platform or cfg.backend,
        max_lengths=_warmup_lengths(cfg, inputs),
        config=cfg,
        **extra,  # type: ignore[arg-type]
    )
    return info


def _warmup_lengths(cfg: mc.ModelConfig, inputs: tuple[TensorInfo, ...]) -> dict[str, int]:
    """Longest warm-up length of every dynamic input axis (export warms up at the model's maximum)."""
    out: dict[str, int] = {}
    for t in inputs:
        axes = [i for i, d in enumerate(t.dims) if d == -1]
        if len(axes) != 1:
            continue
        for w in cfg.model_warmup:
            if t.name in w.inputs and len(w.inputs[t.name].dims) == len(t.dims):
                out[t.name] = max(out.get(t.name, 0), int(w.inputs[t.name].dims[axes[0]]))
    return out


def warmup_inputs(info: ModelInfo, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The config's model_warmup requests as arrays in the model's shapes (Triton's semantics: zero_data or
    random_data; a data file is read as zeros). Without any, one row of zeros (dynamic axes of length 1)."""
    rng = np.random.default_rng(seed)
    cfg = info.config
    requests: list[dict[str, np.ndarray]] = []
    for w in cfg.model_warmup if cfg is not None else ():
        batch = max(int(w.batch_size), 1) if info.max_batch_size > 0 else None
        arrays = {}
        for t in info.inputs:
            spec = w.inputs.get(t.name) if t.name in w.inputs else None
            dims = [int(d) for d in spec.dims] if spec is not None else [1 if d == -1 else d for d in t.dims]
            shape = ([batch] if batch is not None else []) + dims
            if spec is not None and spec.random_data and np.issubdtype(np.dtype(t.dtype), np.floating):
                a = rng.random(shape).astype(t.dtype)
            else:
                a = np.zeros(shape, dtype=t.dtype)
            # Warm-up dims are written in the wire layout; bring them to the model's (drop a reshaped [1]).
            if t.wire_dims is not None and batch is not None:
                a = a.reshape(batch, *[1 if d == -1 else d for d in t.dims])
            arrays[t.name] = a
        requests.append(arrays)
    if not requests:
        lead = [1] if info.max_batch_size > 0 else []
        requests.append({t.name: np.zeros(lead + [1 if d == -1 else d for d in t.dims], t.dtype) for t in info.inputs})
    return requests


def pins_from_manifest(manifest: Mapping[str, object] | None) -> dict[str, int]:
    """{model: version} that artifacts/manifest.json says the artifacts were built with."""
    models = (manifest or {}).get("models") or {}
    if not isinstance(models, Mapping):
        return {}
    return {
        name: int(entry["version"])
        for name, entry in models.items()
        if isinstance(entry, Mapping) and isinstance(entry.get("version"), int)
    }
