"""Triton backend: every model call goes to a Triton server through tritonclient's asyncio client (gRPC, or HTTP).

One client (one gRPC channel or one aiohttp session) is created in `load()`, on the gateway's event loop, and
reused by every call. Each call runs under `timeout_s`; the gRPC channel reconnects with a short backoff, so
when Triton goes away calls fail at once with `Unavailable` (503, never a hang) and succeed again as soon as it
is back, with nothing to restart. `ready()` asks the server and each model, so /readyz follows Triton.

Shapes: callers pass and get the SPEC's shapes (base.py). A config tensor declared as dims [1] with an empty
reshape travels as [batch, 1] and is [batch] here; the conversion happens at this edge, both ways.
Versions: Triton loads versions by its own policy; this backend uses the newest READY version of each model
(or the manifest's pin) and `reload()` re-reads what Triton serves now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from serving.contracts.errors import ModelNotLoaded, ReloadFailed, RequestTimeout, ServingError, Unavailable
from serving.runtime.backends.base import InferenceBackend, ModelInfo, ReloadResult, TensorInfo
from serving.runtime.backends.repository import model_info

if TYPE_CHECKING:
    from serving.runtime.settings import Settings

log = logging.getLogger("serving.runtime.backends.triton")

# Reconnect quickly once Triton is back (gRPC's default backoff grows to 2 minutes); unlimited message sizes
# because a DIN batch of 1024 rows x history is several MB.
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 500),  # a restarted server is found again within half a second
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]
_UNREACHABLE = ("UNAVAILABLE", "failed to connect", "connection refused", "Cannot connect", "503")
_NOT_LOADED = ("unknown model", "is not ready", "is not found", "NOT_FOUND")


@dataclass(frozen=True)
class _Status:
    name: str
    version: str
    state: str
    reason: str


class _Api:
    """The few calls we need, the same for the gRPC and HTTP asyncio clients (they differ in return types)."""

    def __init__(self, url: str, protocol: str, timeout_s: float):
        self.protocol = protocol
        if protocol == "grpc":
            import tritonclient.grpc.aio as client_module

            self.client: Any = client_module.InferenceServerClient(url, channel_args=_CHANNEL_ARGS)
        elif protocol == "http":
            import tritonclient.http.aio as client_module  # needs aiohttp

            self.client = client_module.InferenceServerClient(url, conn_timeout=timeout_s)
        else:
            raise ValueError(f"Triton protocol must be grpc or http, not {protocol!r}")
        self.module = client_module

    async def server_ready(self) -> bool:
        return bool(await self.client.is_server_ready())

    async def model_ready(self, name: str, version: str = "") -> bool:
        return bool(await self.client.is_model_ready(name, version))

    async def index(self) -> list[_Status]:
        if self.protocol == "grpc":
            models = (await self.client.get_model_repository_index()).models
            return [_Status(m.name, m.version, m.state, m.reason) for m in models]
        models = await self.client.get_model_repository_index()
        return [_Status(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", "")) for m in models]

    async def versions(self, name: str) -> list[int]:
        meta = await self.client.get_model_metadata(name)
        versions = meta.versions if self.protocol == "grpc" else meta.get("versions", [])
        return sorted(int(v) for v in versions)

    async def config(self, name: str, version: str) -> mc.ModelConfig:
        if self.protocol == "grpc":
            return (await self.client.get_model_config(name, version)).config
        raw = await self.client.get_model_config(name, version)
        return json_format.ParseDict(raw, mc.ModelConfig(), ignore_unknown_fields=True)

    async def infer(
        self, name: str, version: str, arrays: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        inputs = []
        for key, a in arrays.items():
            tensor = self.module.InferInput(key, list(a.shape), np_to_triton_dtype(a.dtype))
            tensor.set_data_from_numpy(a)
            inputs.append(tensor)
        wanted = [self.module.InferRequestedOutput(n) for n in outputs]
        result = await self.client.infer(name, inputs, model_version=version, outputs=wanted)
        return {n: result.as_numpy(n) for n in outputs}

    async def close(self) -> None:
        await self.client.close()


def _wire(t: TensorInfo, a: np.ndarray) -> np.ndarray:
    """Spec shape -> config (wire) shape: [batch] becomes [batch, 1] for a dims [1] + reshape [] tensor."""
    return a if t.wire_dims is None else a.reshape(a.shape[0], *t.wire_dims)


def _unwire(t: TensorInfo, a: np.ndarray) -> np.ndarray:
    return a if t.wire_dims is None else a.reshape(a.shape[0], *t.dims)


def _translate(exc: Exception, url: str, what: str, model: str | None = None) -> ServingError | ValueError:
    """tritonclient / transport errors -> the gateway's error types (503 unreachable, 504 slow, 500 else).

    The client is told what failed in a few words; the server address and transport text go to `internal`
    (logged, never answered)."""
    if isinstance(exc, TimeoutError):
        return RequestTimeout(f"the model server did not answer {what} in time", internal=f"Triton at {url}")
    if isinstance(exc, InferenceServerException):
        status, message = str(exc.status() or ""), str(exc.message() or exc)
        detail = f"Triton at {url}: {status} {message}".strip()
        if "DEADLINE_EXCEEDED" in status:
            return RequestTimeout(f"the model server did not answer {what} in time", internal=detail)
        if model is not None and any(s in message for s in _NOT_LOADED):
            err = ModelNotLoaded(model, "not loaded by the model server")
            err.internal = detail
            return err
        if any(s in status or s in message for s in _UNREACHABLE):
            return Unavailable(f"the model server is unreachable ({what})", retry_after=1, internal=detail)
        if "INVALID_ARGUMENT" in status or status == "400":
            return ValueError(f"Triton rejected {what}: {message}")
        return ServingError(f"the model server failed on {what}", internal=detail)
    if isinstance(exc, OSError) or type(exc).__module__.startswith("aiohttp"):  # HTTP client: no server there
        return Unavailable(
            f"the model server is unreachable ({what})", retry_after=1, internal=f"Triton at {url}: {exc}"
        )
    return ServingError(f"the model server failed on {what}", internal=f"Triton at {url}: {type(exc).__name__}: {exc}")


class TritonBackend(InferenceBackend):
    kind = "triton"

    def __init__(
        self,
        url: str,
        *,
        protocol: str = "grpc",
        models: Sequence[str] | None = None,
        timeout_s: float = 5.0,
        probe_timeout_s: float = 1.0,
        start_timeout_s: float = 0.0,
    ):
        """`timeout_s` bounds each model call; `probe_timeout_s` each readiness question; `start_timeout_s` is how
        long `load()` waits for Triton to become ready (0: ask once and fail fast)."""
        self.url = url
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.probe_timeout_s = probe_timeout_s
        self.start_timeout_s = start_timeout_s
        self._wanted = tuple(models) if models else None
        self._api: _Api | None = None
        self._models: dict[str, ModelInfo] = {}  # replaced as a whole on reload
        self._reload_lock = asyncio.Lock()
        self.last_error: str | None = None  # why the last readiness check said no

    @classmethod
    def from_settings(cls, settings: Settings) -> TritonBackend:
        return cls(
            settings.triton_url,
            protocol=settings.triton_protocol,
            models=settings.models,
            timeout_s=settings.request_timeout_s,
        )

    # ---- loading

    def _client(self) -> _Api:
        if self._api is None:
            self._api = _Api(self.url, self.protocol, self.timeout_s)
        return self._api

    async def _ask(self, what: str, call: Any, timeout: float, model: str | None = None) -> Any:
        try:
            async with asyncio.timeout(timeout):
                return await call
        except (ServingError, ValueError):
            raise
        except Exception as exc:
            raise _translate(exc, self.url, what, model) from exc

    async def _wait_server(self) -> None:
        api = self._client()
        deadline = asyncio.get_running_loop().time() + self.start_timeout_s
        while True:
            try:
                if await self._ask("server readiness", api.server_ready(), self.probe_timeout_s):
                    return
                problem = "the server answers but is not ready"
            except ServingError as exc:
                problem = exc.message
            if asyncio.get_running_loop().time() >= deadline:
                raise Unavailable(f"Triton at {self.url} is not ready: {problem}", retry_after=1)
            await asyncio.sleep(0.2)

    async def _discover(self, models: Sequence[str] | None, pins: Mapping[str, int] | None) -> dict[str, ModelInfo]:
        """ModelInfo of each wanted model at its newest ready (or pinned) version, from Triton's own config."""
        api = self._client()
        index = await self._ask("the model index", api.index(), self.timeout_s)
        states = {s.name: s for s in sorted(index, key=lambda s: s.state == "READY")}  # a READY version wins
        names = list(models or self._wanted or sorted({s.name for s in index if s.state == "READY"}))
        problems = []
        found: dict[str, ModelInfo] = {}
        for name in names:
            status = states.get(name)
            if status is None or status.state != "READY":
                why = "not in Triton's repository" if status is None else f"{status.state} {status.reason}".strip()
                problems.append(f"{name}: {why}")
                continue
            pin = (pins or {}).get(name)
            versions = await self._ask(f"{name} metadata", api.versions(name), self.timeout_s, name)
            version = pin if pin is not None else (versions[-1] if versions else None)
            if version is None or version not in versions:
                problems.append(f"{name}: version {version} is not served (Triton serves {versions})")
                continue
            if not await self._ask(f"{name} readiness", api.model_ready(name, str(version)), self.timeout_s, name):
                problems.append(f"{name}: version {version} is not ready")
                continue
            cfg = await self._ask(f"{name} config", api.config(name, str(version)), self.timeout_s, name)
            found[name] = model_info(cfg, version, providers=(f"triton:{self.url}",))
        if problems:
            raise Unavailable(f"Triton at {self.url}: " + "; ".join(problems), retry_after=1)
        return found

    async def load(self, models: Sequence[str] | None = None, pins: Mapping[str, int] | None = None) -> None:
        await self._wait_server()
        self._models = await self._discover(models, pins)
        log.info("Triton at %s serves %s", self.url, ", ".join(f"{n} v{i.version}" for n, i in self._models.items()))

    async def reload(self, models: Sequence[str] | None = None, pins: Mapping[str, int] | None = None) -> ReloadResult:
        """Re-read the versions Triton serves now (Triton loads them itself) and swap the table in one step."""
        async with self._reload_lock:
            try:
                fresh = await self._discover(models or list(self._models) or None, pins)
            except (ServingError, ValueError) as exc:
                raise ReloadFailed(f"reload refused, the serving versions stay: {exc}") from exc
            old = self._models
            changed = {
                n: (old[n].version if n in old else None, i.version)
                for n, i in fresh.items()
                if n not in old or old[n].version != i.version or old[n].config != i.config
            }
            self._models = {**old, **fresh}
            return ReloadResult(changed=changed, unchanged=[n for n in fresh if n not in changed])

    # ---- serving

    def models(self) -> dict[str, ModelInfo]:
        return dict(self._models)

    async def ready(self) -> bool:
        if self._api is None or not self._models:
            self.last_error = "not loaded"
            return False
        try:
            if not await self._ask("server readiness", self._api.server_ready(), self.probe_timeout_s):
                self.last_error = "server not ready"
                return False
            for name, info in self._models.items():
                call = self._api.model_ready(name, str(info.version))
                if not await self._ask(f"{name} readiness", call, self.probe_timeout_s, name):
                    self.last_error = f"{name} v{info.version} not ready"
                    return False
        except (ServingError, ValueError) as exc:
            self.last_error = str(exc)
            return False
        self.last_error = None
        return True

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        info = self._models.get(model)
        if info is None or self._api is None:
            raise ModelNotLoaded(model)
        arrays = _wire_inputs(info, inputs)
        call = self._api.infer(model, str(info.version), arrays, info.output_names)
        outputs = await self._ask(f"{model} inference", call, self.timeout_s, model)
        if info.max_batch_size == 0:
            return {t.name: outputs[t.name] for t in info.outputs}
        return {t.name: _unwire(t, outputs[t.name]) for t in info.outputs}

    async def close(self) -> None:
        api, self._api = self._api, None
        self._models = {}
        if api is not None:
            await api.close()


def _wire_inputs(info: ModelInfo, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs checked (names, rank), cast to the config's dtypes and put in the wire layout."""
    missing = [n for n in info.input_names if n not in inputs]
    extra = [n for n in inputs if info.input(n) is None]
    if missing or extra:
        raise ValueError(f"{info.name}: inputs missing {missing}, unexpected {extra}")
    batch = 1 if info.max_batch_size > 0 else 0
    out = {}
    for t in info.inputs:
        a = np.asarray(inputs[t.name])
        if a.dtype != t.dtype:
            a = a.astype(t.dtype, casting="same_kind")
        if a.ndim != batch + len(t.dims):
            raise ValueError(f"{info.name}.{t.name}: rank {a.ndim}, expected {batch + len(t.dims)} ({t.dims})")
        out[t.name] = np.ascontiguousarray(_wire(t, a) if batch else a)
    return out
