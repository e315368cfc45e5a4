"""Embedded backend: one ONNX Runtime session per model, read from the Triton model repository.

Names, dims, max_batch_size and queue delay come from each config.pbtxt (the same files Triton reads),
the version from the config's version policy (newest) or a pin from the manifest. The session is
checked against its config at load (names, dtypes, ranks), so a drifted repository fails at start,
not on the first request. Sessions run in a thread pool (ORT releases the GIL, the event loop stays free),
or on the event loop itself where a thread hop buys nothing (serving/runtime/cpus.py, SERVING_MODEL_CALLS).

Reload loads and warms the new version beside the serving one, then swaps one dict reference: calls
already running keep their session object and finish on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import onnxruntime as ort

from serving.contracts.errors import ModelNotLoaded, ReloadFailed, RepositoryError
from serving.runtime.backends.base import InferenceBackend, ModelInfo, ReloadResult
from serving.runtime.backends.repository import (
    choose_version,
    is_onnx_model,
    list_models,
    model_file,
    model_info,
    warmup_inputs,
)
from serving.runtime.cpus import run_inline
from serving.runtime.manifest import sha256_file

log = logging.getLogger("serving.runtime.backends.embedded")

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


def resolve_providers(choice: str, available: Sequence[str] | None = None) -> list[str]:
    """Execution providers for a SERVING_EXECUTION_PROVIDER choice; `auto` takes CUDA when ORT has it."""
    have = set(ort.get_available_providers() if available is None else available)
    cpu = ["CPUExecutionProvider"]
    if choice == "cpu":
        return cpu
    if choice == "auto":
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in have else []) + cpu
    wanted = {"cuda": ["CUDAExecutionProvider"], "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"]}
    if choice not in wanted:
        raise ValueError(f"execution provider must be auto, cpu, cuda or tensorrt, not {choice!r}")
    missing = [p for p in wanted[choice] if p not in have]
    if missing:
        raise RepositoryError(
            f"execution provider {choice!r} asked for, but this onnxruntime lacks {', '.join(missing)} "
            f"(it has {', '.join(sorted(have))}); install onnxruntime-gpu or use auto/cpu"
        )
    return wanted[choice] + cpu


@dataclass(frozen=True)
class _Loaded:
    info: ModelInfo
    session: ort.InferenceSession


class EmbeddedBackend(InferenceBackend):
    kind = "embedded"

    def __init__(
        self,
        repository: str,
        *,
        models: Sequence[str] | None = None,
        provider: str = "auto",
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        workers: int = 4,
        warmup: bool = True,
        model_calls: str = "thread",
    ):
        self.repository = repository
        self._wanted = tuple(models) if models else None
        self._providers = resolve_providers(provider)
        self._intra, self._inter = intra_op_threads, inter_op_threads
        self._warmup = warmup
        # Decided once: the providers are fixed for the backend's life.
        self.inline = run_inline(model_calls, on_gpu=self._providers[0] != "CPUExecutionProvider")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ort")
        self._loaded = {}  # replaced as a whole on reload, never mutated in place (the property below)
        self._reload_lock = asyncio.Lock()
        self.warmup_seconds: dict[str, float] = {}

    # ---- loading

    def _session(self, info: ModelInfo) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.intra_op_num_threads = self._intra
        so.inter_op_num_threads = self._inter
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
        return ort.InferenceSession(str(info.path), sess_options=so, providers=self._providers)

    def _load_one(self, cfg, pin: int | None) -> _Loaded:
        version = choose_version(self.repository, cfg, pin)
        path = model_file(self.repository, cfg, version)
        info = model_info(cfg, version, sha256=sha256_file(path), path=path)
        try:
            session = self._session(info)
        except Exception as exc:  # ORT raises its own exception types for unreadable graphs
            raise RepositoryError(f"{path}: ONNX Runtime cannot load it ({exc})") from exc
        _check_session(info, session)
        info = _with_providers(info, tuple(session.get_providers()))
        loaded = _Loaded(info, session)
        if self._warmup:
            t0 = time.perf_counter()
            for feeds in warmup_inputs(info):
                session.run(info.output_names, feeds)
            self.warmup_seconds[cfg.name] = time.perf_counter() - t0
        return loaded

    def _targets(self, models: Sequence[str] | None) -> dict:
        configs = list_models(self.repository)
        names = list(models or self._wanted or [n for n, c in configs.items() if is_onnx_model(c)])
        missing = [n for n in names if n not in configs]
        if missing:
            raise RepositoryError(f"{self.repository}: no config.pbtxt for {', '.join(missing)}")
        wrong = [n for n in names if not is_onnx_model(configs[n])]
        if wrong:
            raise RepositoryError(f"the embedded backend serves ONNX models only; not {', '.join(wrong)}")
        return {n: configs[n] for n in names}

    async def load(self, models: Sequence[str] | None = None, pins: Mapping[str, int] | None = None) -> None:
        targets = self._targets(models)
        loaded = {}
        for name, cfg in targets.items():
            loaded[name] = await asyncio.to_thread(self._load_one, cfg, (pins or {}).get(name))
            log.info("loaded %s v%d on %s", name, loaded[name].info.version, ",".join(loaded[name].info.providers))
        self._loaded = loaded

    async def reload(self, models: Sequence[str] | None = None, pins: Mapping[str, int] | None = None) -> ReloadResult:
        async with self._reload_lock:
            try:
                targets = self._targets(models or None)
                fresh: dict[str, _Loaded] = {}
                unchanged: list[str] = []
                for name, cfg in targets.items():
                    current = self._loaded.get(name)
                    version = choose_version(self.repository, cfg, (pins or {}).get(name))
                    if current is not None and _same(current.info, cfg, version, self.repository):
                        unchanged.append(name)
                        continue
                    fresh[name] = await asyncio.to_thread(self._load_one, cfg, version)
            except RepositoryError as exc:
                raise ReloadFailed(f"reload refused, the serving versions stay: {exc}") from exc
            old = self._loaded
            self._loaded = {**old, **fresh}  # the swap: one reference, no await before it is complete
            changed = {n: (old[n].info.version if n in old else None, f.info.version) for n, f in fresh.items()}
            return ReloadResult(changed=changed, unchanged=unchanged)

    # ---- serving

    @property
    def _loaded(self) -> dict[str, _Loaded]:
        return self._sessions

    @_loaded.setter
    def _loaded(self, loaded: dict[str, _Loaded]) -> None:
        # The infos are built once per swap: models() is asked several times per request.
        self._sessions, self._infos = loaded, {n: m.info for n, m in loaded.items()}

    def models(self) -> dict[str, ModelInfo]:
        return self._infos  # replaced whole on every swap; callers read it, never change it

    async def ready(self) -> bool:
        return bool(self._loaded)

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = self._loaded.get(model)  # taken once: a reload during the run does not affect this call
        if loaded is None:
            raise ModelNotLoaded(model)
        feeds = _feeds(loaded.info, inputs)
        names = loaded.info.output_names
        if self.inline:
            outputs = loaded.session.run(names, feeds)
        else:
            outputs = await asyncio.get_running_loop().run_in_executor(self._pool, loaded.session.run, names, feeds)
        return dict(zip(names, outputs, strict=True))

    async def warmup(self, model: str) -> float:
        loaded = self._loaded.get(model)
        if loaded is None:
            raise ModelNotLoaded(model)
        t0 = time.perf_counter()
        for feeds in warmup_inputs(loaded.info):
            await asyncio.get_running_loop().run_in_executor(
                self._pool, loaded.session.run, loaded.info.output_names, feeds
            )
        return time.perf_counter() - t0

    async def close(self) -> None:
        self._loaded = {}
        self._pool.shutdown(wait=True, cancel_futures=True)


def _same(info: ModelInfo, cfg, version: int, repository: str) -> bool:
    """Nothing to reload: same version, same config, same bytes."""
    if info.version != version or info.config != cfg:
        return False
    return info.sha256 == sha256_file(model_file(repository, cfg, version))


def _with_providers(info: ModelInfo, providers: tuple[str, ...]) -> ModelInfo:
    return replace(info, providers=providers)


def _check_session(info: ModelInfo, session: ort.InferenceSession) -> None:
    """The ONNX graph must agree with config.pbtxt: same input names, outputs present, dtypes and ranks."""
    batch = 1 if info.max_batch_size > 0 else 0
    problems = []
    graph_in = {i.name: i for i in session.get_inputs()}
    graph_out = {o.name: o for o in session.get_outputs()}
    if set(graph_in) != set(info.input_names):
        problems.append(f"inputs: graph has {sorted(graph_in)}, config has {sorted(info.input_names)}")
    for tensors, graph in ((info.inputs, graph_in), (info.outputs, graph_out)):
        for t in tensors:
            g = graph.get(t.name)
            if g is None:
                if graph is graph_out:
                    problems.append(f"output {t.name}: not in the graph (graph has {sorted(graph_out)})")
                continue
            if _ORT_DTYPES.get(g.type) != t.dtype:
                problems.append(f"{t.name}: graph dtype {g.type}, config {t.dtype}")
            if len(g.shape) != batch + len(t.dims):
                problems.append(f"{t.name}: graph rank {len(g.shape)}, config rank {batch + len(t.dims)}")
    if problems:
        raise RepositoryError(f"{info.path}: the ONNX graph disagrees with config.pbtxt: " + "; ".join(problems))


def _feeds(info: ModelInfo, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs cast to the config's dtypes; names and ranks checked (a gateway bug, not a client error)."""
    missing = [n for n in info.input_names if n not in inputs]
    extra = [n for n in inputs if info.input(n) is None]
    if missing or extra:
        raise ValueError(f"{info.name}: inputs missing {missing}, unexpected {extra}")
    feeds = {}
    batch = 1 if info.max_batch_size > 0 else 0
    for t in info.inputs:
        a = np.ascontiguousarray(inputs[t.name])  # broadcast views (one history for N rows) become real arrays
        if a.dtype != t.dtype:
            a = a.astype(t.dtype, casting="same_kind")
        if a.ndim != batch + len(t.dims):
            raise ValueError(f"{info.name}.{t.name}: rank {a.ndim}, expected {batch + len(t.dims)} ({t.dims})")
        feeds[t.name] = a
    return feeds
