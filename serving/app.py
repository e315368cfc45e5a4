"""The gateway application: `create_app(settings)` builds a FastAPI app around one `Runtime`.

Start-up (lifespan): verify artifacts/manifest.json (a mismatch refuses to start, with the file and
the difference named), load every model of the repository with the backend and warm it up with its
config.pbtxt warm-up requests (export writes them from the spec's example inputs), put a
micro-batcher in front of each model (embedded backend), load the retrieval, feature and intent
artifacts. /readyz turns 200 when that is done. Then the gRPC API (serving/grpc_server.py) starts on
SERVING_GRPC_PORT over the same Runtime, unless SERVING_GRPC_ENABLED=false.

Reload without dropping requests: SIGHUP or `POST /admin/reload` re-verifies the manifest, loads the
new model versions beside the serving ones (warmed), reloads the artifacts, then swaps both in one
step of the event loop; requests already running finish on what they started with.

Shutdown (SIGTERM): uvicorn stops accepting connections and lets open requests finish (up to
SERVING_DRAIN_TIMEOUT_S); then gRPC health turns NOT_SERVING and the gRPC server refuses new calls
and lets running ones finish (the same timeout); then the runtime marks itself draining (/readyz 503),
waits for any request still counted in flight, the batchers run what is queued, and the sessions close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.backends import make_backend
from serving.backends.base import InferenceBackend, ModelInfo
from serving.backends.repository import pins_from_manifest
from serving.batching import BatchingBackend
from serving.errors import (
    ModelNotLoaded,
    PayloadTooLarge,
    ReloadFailed,
    RequestTimeout,
    ServingError,
    Unavailable,
)
from serving.features import ITEMS_FILE, FeatureStore, ForecastFeatureSource
from serving.forecast_source import SALES_FILE, StoredSales
from serving.intent import METADATA_FILE, IntentClassifier
from serving.manifest import MISSING, ManifestError, key_path, load_manifest, lookup, resolve_roots, verify_manifest
from serving.metrics import Metrics
from serving.retrieval import Retriever
from serving.settings import Settings, get_settings

log = logging.getLogger("serving")

# Model names in the repository (serving/model_specs.py); intent and forecast models are settings.
USER_TOWER, DIN = "user_tower", "din"
INDEX_FILE = "retrieval/items.faiss"

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


# ---------------------------------------------------------------------------------------------------------
# Artifacts


@dataclass(frozen=True)
class Artifacts:
    """What the routes read besides the models; replaced as a whole on reload."""

    features: FeatureStore | None = None
    retriever: Retriever | None = None
    intent: IntentClassifier | None = None
    forecast: ForecastFeatureSource | None = None
    problems: dict[str, str] = field(default_factory=dict)  # component -> why it is unavailable

    def need(self, component: str) -> Any:
        value = getattr(self, component)
        if value is None:
            raise Unavailable(f"{component} not available: {self.problems.get(component, 'not loaded')}")
        return value


def _manifest_file(manifest: Mapping[str, Any] | None, dotted: str, settings: Settings, default: str) -> Path:
    """Path of an artifact the manifest names (e.g. retrieval.file), else the default under artifacts/."""
    key = lookup(manifest, dotted) if manifest else None
    if isinstance(key, str) and key != MISSING:
        roots = resolve_roots(settings.manifest_path, _roots(settings))
        return key_path(key, roots)
    return settings.artifacts / default


def _roots(settings: Settings) -> dict[str, Path]:
    return {"artifacts": settings.artifacts.resolve(), "model_repository": settings.model_repository.resolve()}


def load_artifacts(
    settings: Settings, manifest: Mapping[str, Any] | None, models: Mapping[str, ModelInfo]
) -> Artifacts:
    """Load what exists; a missing file makes its endpoints answer 503, a broken or inconsistent one stops start-up."""
    problems: dict[str, str] = {}
    hint = "build it with `make models`"
    features = retriever = intent = None
    if (settings.artifacts / ITEMS_FILE).is_file():
        features = FeatureStore.load(settings.artifacts)
    else:
        problems["features"] = f"{settings.artifacts / ITEMS_FILE} not found ({hint})"
    index_path = _manifest_file(manifest, "retrieval.file", settings, INDEX_FILE)
    if index_path.is_file():
        tuned = lookup(manifest, "retrieval.index_params") if manifest else None
        tuned = tuned if isinstance(tuned, Mapping) else {}
        retriever = Retriever.load(
            index_path,
            nprobe=settings.nprobe or tuned.get("nprobe"),
            ef_search=settings.ef_search or tuned.get("ef_search"),
            gpu=settings.faiss_gpu,
        )
    else:
        problems["retriever"] = f"{index_path} not found ({hint})"
    if (settings.artifacts / METADATA_FILE).is_file():
        intent = IntentClassifier.load(settings.artifacts, settings.handoff_threshold)
    else:
        problems["intent"] = f"{settings.artifacts / METADATA_FILE} not found ({hint})"
    forecast = None
    sales_path = _manifest_file(manifest, "forecast.file", settings, SALES_FILE)
    section = lookup(manifest, "forecast") if manifest else None
    if sales_path.is_file() and isinstance(section, Mapping):
        forecast = StoredSales.load(sales_path, section)
    else:
        why = "not found" if not sales_path.is_file() else "has no forecast section in the manifest"
        problems["forecast"] = f"{sales_path} {why} ({hint})"
    intent_model = pick_intent_model(settings.intent_model, settings.backend, models)
    _check_consistency(features, retriever, intent, models, intent_model)
    _check_forecast(forecast, models.get(settings.forecast_model))
    return Artifacts(features, retriever, intent, forecast, problems)


def _check_forecast(forecast: StoredSales | None, tcn: ModelInfo | None) -> None:
    """The stored sales' feature layout must be the one the served TCN was trained on."""
    if forecast is None or tcn is None:
        return
    dims = {t.name: tuple(t.dims) for t in tcn.inputs}
    want = {
        "past_features": (forecast.spec.n_past, forecast.spec.context_days),
        "future_features": (forecast.spec.n_future, forecast.spec.horizon),
    }
    wrong = [f"{k} {dims[k]} != {v}" for k, v in want.items() if k in dims and dims[k] != v and -1 not in dims[k]]
    if wrong:
        raise ManifestError("forecast features do not fit the TCN: " + "; ".join(wrong))


INTENT_FP32, INTENT_INT8 = "intent_bert", "intent_bert_int8"


def pick_intent_model(choice: str, backend: str, models: Mapping[str, ModelInfo]) -> str:
    """`auto`: the int8 model where it is served by the embedded backend on the CPU only (dynamic int8 is a
    CPU optimisation; on a GPU or behind Triton the fp32 model is the one to use), else the fp32 one."""
    if choice != "auto":
        return choice
    int8 = models.get(INTENT_INT8)
    on_cpu = int8 is not None and bool(int8.providers) and all(p == "CPUExecutionProvider" for p in int8.providers)
    return INTENT_INT8 if backend == "embedded" and on_cpu else INTENT_FP32


def _check_consistency(
    features: FeatureStore | None,
    retriever: Retriever | None,
    intent: IntentClassifier | None,
    models: Mapping[str, ModelInfo],
    intent_model: str,
) -> None:
    """Artifacts that do not fit each other or the models would give wrong answers: refuse them."""
    problems = []
    if features is not None and retriever is not None and retriever.ntotal != len(features.items):
        problems.append(f"FAISS index has {retriever.ntotal} items, the item table {len(features.items)}")
    tower = models.get(USER_TOWER)
    if tower is not None and retriever is not None and tower.outputs and tower.outputs[0].dims[-1:] != (retriever.dim,):
        problems.append(f"user tower emits {tower.outputs[0].dims} vectors, the index holds {retriever.dim}-d ones")
    bert = models.get(intent_model)
    probs = bert.outputs[-1] if bert is not None and bert.outputs else None
    if intent is not None and probs is not None and probs.dims and probs.dims[-1] not in (-1, len(intent.meta.labels)):
        problems.append(f"intent model has {probs.dims[-1]} outputs, the metadata {len(intent.meta.labels)} labels")
    if problems:
        raise ManifestError("artifacts do not fit together: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------------------
# Runtime


class Runtime:
    """Everything a request needs: settings, metrics, the backend, the artifacts, and the serving state."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None, backend: InferenceBackend | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._given_backend = backend
        self.backend: InferenceBackend | None = None
        self.artifacts = Artifacts(problems={"all": "starting"})
        self.manifest: dict[str, Any] | None = None
        self.started = False
        self.draining = False
        self.inflight = 0
        self.startup_s: float | None = None
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()  # signal-started reloads, referenced until done

    # ---- life cycle

    def _verify_manifest(self) -> dict[str, Any] | None:
        s = self.settings
        if not s.manifest_path.is_file():
            if s.require_manifest:
                raise ManifestError(f"no manifest at {s.manifest_path}; build the artifacts with `make models`")
            log.warning("no %s: artifacts are not verified", s.manifest_path)
            return None
        if s.manifest_check == "off":
            return load_manifest(s.manifest_path)
        return verify_manifest(s.manifest_path, roots=_roots(s), check_hashes=s.manifest_check == "hash")

    async def start(self) -> None:
        t0 = time.perf_counter()
        s = self.settings
        self.manifest = await asyncio.to_thread(self._verify_manifest)
        backend = self._given_backend or make_backend(s)
        if s.batching and backend.kind == "embedded":  # Triton batches on its side
            backend = BatchingBackend(
                backend,
                max_batch_size=s.batch_max_size,
                max_delay_ms=s.batch_max_delay_ms,
                concurrency=s.batch_concurrency,
                queue_max_batches=s.queue_max_batches,
                observer=self.metrics,
                retry_after=s.retry_after_s,
            )
        self.backend = backend
        await backend.load(s.models, pins_from_manifest(self.manifest))
        self.artifacts = await asyncio.to_thread(load_artifacts, s, self.manifest, backend.models())
        self._publish_versions()
        self.started = True
        self.startup_s = time.perf_counter() - t0
        models = ", ".join(f"{n} v{i.version}" for n, i in backend.models().items()) or "none"
        log.info("ready in %.2f s: %s backend, models %s", self.startup_s, backend.kind, models)
        for component, why in self.artifacts.problems.items():
            log.warning("%s unavailable: %s", component, why)

    async def stop(self) -> None:
        self.draining = True
        deadline = time.perf_counter() + self.settings.drain_timeout_s
        while self.inflight > 0 and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        if self.inflight:
            log.warning("shutting down with %d requests still running", self.inflight)
        if self.backend is not None:
            await self.backend.close()

    async def reload(self, models: list[str] | None = None) -> dict[str, Any]:
        """Re-verify, load beside, swap. Raises ReloadFailed (the serving versions stay) on any problem."""
        backend = self._backend()
        async with self._reload_lock:
            try:
                manifest = await asyncio.to_thread(self._verify_manifest)
                artifacts = await asyncio.to_thread(load_artifacts, self.settings, manifest, backend.models())
                result = await backend.reload(models, pins_from_manifest(manifest))
            except ReloadFailed:
                self.metrics.reloads.labels("failed").inc()
                raise
            except Exception as exc:  # bad manifest, unreadable index or table (faiss raises RuntimeError)...
                self.metrics.reloads.labels("failed").inc()
                raise ReloadFailed(f"reload refused, the serving versions stay: {exc}") from exc
            try:
                parts = (artifacts.features, artifacts.retriever, artifacts.intent)
                models = backend.models()
                _check_consistency(
                    *parts, models, pick_intent_model(self.settings.intent_model, self.settings.backend, models)
                )
            except ManifestError as exc:  # only a manifest that contradicts itself gets here
                self.metrics.reloads.labels("failed").inc()
                self._publish_versions()
                msg = f"new model versions serve, but the new artifacts do not fit them (previous ones stay): {exc}"
                raise ReloadFailed(msg) from exc
            self.artifacts, self.manifest = artifacts, manifest  # no await since the model swap: one step
            self._publish_versions()
            self.metrics.reloads.labels("ok").inc()
            log.info("reloaded: changed %s, unchanged %s", result.changed, result.unchanged)
            return {
                "changed": {n: {"from": a, "to": b} for n, (a, b) in result.changed.items()},
                "unchanged": result.unchanged,
                "artifacts_reloaded": True,
            }

    def reload_in_background(self) -> None:
        """SIGHUP entry point: a failed reload is logged, never raised into the loop."""

        async def run() -> None:
            try:
                await self.reload()
            except ServingError as exc:
                log.error("SIGHUP reload failed: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- used by the routes

    def _backend(self) -> InferenceBackend:
        if self.backend is None:
            raise Unavailable("the gateway is starting")
        return self.backend

    @property
    def intent_model(self) -> str:
        """The repository model behind /v1/intent (SERVING_INTENT_MODEL, `auto` resolved)."""
        return pick_intent_model(self.settings.intent_model, self.settings.backend, self._backend().models())

    def model(self, name: str) -> ModelInfo:
        """The serving version of a model, or 503 'model not loaded'."""
        info = self._backend().models().get(name)
        if info is None:
            raise ModelNotLoaded(name, "not in the model repository" if self.started else "starting")
        return info

    async def infer(self, model: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return await self._backend().infer(model, inputs)

    async def readiness(self) -> tuple[bool, dict[str, int], dict[str, str]]:
        models = {n: i.version for n, i in self.backend.models().items()} if self.backend else {}
        components = {f"model:{n}": "ok" for n in models}
        components.update(self.artifacts.problems)
        for part in ("features", "retriever", "intent"):
            if getattr(self.artifacts, part) is not None:
                components[part] = "ok"
        backend_ok = self.backend is not None and await self.backend.ready()
        if not models:
            components["models"] = f"no models loaded from {self.settings.model_repository} (run `make models`)"
        ready = self.started and not self.draining and backend_ok and bool(models)
        return ready, models, components

    def _publish_versions(self) -> None:
        for name, info in self._backend().models().items():
            self.metrics.model_version.labels(name).set(info.version)


# ---------------------------------------------------------------------------------------------------------
# ASGI middleware (pure ASGI: no per-request task or body buffering, unlike BaseHTTPMiddleware)


def error_response(err: ServingError) -> JSONResponse:
    return JSONResponse({"error": err.code, "detail": err.detail}, status_code=err.status, headers=err.headers())


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read; an HTTPException so FastAPI passes it on instead of making it a 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


class RequestContextMiddleware:
    """Outermost: request id, in-flight count (graceful drain), latency and status per route."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app, self.rt = app, runtime

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex[:16]
        status, started = 500, False
        t0 = time.perf_counter()

        async def send_with_id(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        self.rt.inflight += 1
        self.rt.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # The last resort for anything unforeseen: logged with its trace, answered without it.
            log.exception("unhandled error in %s %s (request %s)", scope["method"], scope["path"], rid)
            self.rt.metrics.errors.labels("internal_error").inc()
            if started:  # too late for an answer; the server closes the connection
                raise
            body = {"error": "internal_error", "detail": f"internal error; request id {rid} is in the server log"}
            await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            self.rt.inflight -= 1
            self.rt.metrics.inflight.dec()
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            self.rt.metrics.requests.labels(label, scope["method"], str(status)).inc()
            self.rt.metrics.request_seconds.labels(label, scope["method"]).observe(time.perf_counter() - t0)


class BodyLimitMiddleware:
    """413 for bodies over the limit: at once from Content-Length, or while reading a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: Metrics):
        self.app, self.max_bytes, self.metrics = app, max_bytes, metrics

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            self.metrics.errors.labels(PayloadTooLarge.code).inc()
            err = PayloadTooLarge(f"request body larger than {self.max_bytes} bytes")
            return await error_response(err)(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


class TimeoutMiddleware:
    """504 when a /v1 request runs past the deadline; its queued batch rows are abandoned, not run."""

    def __init__(self, app: ASGIApp, seconds: float, metrics: Metrics, prefix: str = "/v1/"):
        self.app, self.seconds, self.metrics, self.prefix = app, seconds, metrics, prefix

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        started = False

        async def track(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, track)
        except TimeoutError:
            if started:
                raise
            self.metrics.errors.labels(RequestTimeout.code).inc()
            err = RequestTimeout(f"no answer within {self.seconds:g} s")
            await error_response(err)(scope, receive, send)


# ---------------------------------------------------------------------------------------------------------
# Error handlers: every error has the {"error", "detail"} body; nothing leaks a stack trace.


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        metrics.errors.labels(exc.code).inc()
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("validation_error").inc()
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"error": "validation_error", "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        metrics.errors.labels(code).inc()
        return JSONResponse({"error": code, "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


# ---------------------------------------------------------------------------------------------------------
# Factory


def create_app(settings: Settings | None = None, *, backend: InferenceBackend | None = None) -> FastAPI:
    """The gateway. `backend` replaces the one the settings name (tests wrap or fake it)."""
    settings = settings or get_settings()
    logging.getLogger("serving").setLevel(settings.log_level.upper())
    runtime = Runtime(settings, backend=backend)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.start()
        except Exception as exc:  # a bad manifest, repository or artifact: say why, then let uvicorn exit
            log.error("refusing to start: %s", exc)
            raise
        hup = _install_sighup(runtime)
        try:
            await _start_grpc(app, runtime)
            yield
        finally:
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            if app.state.grpc is not None:
                await app.state.grpc.stop(settings.drain_timeout_s)
            await runtime.stop()

    app = FastAPI(
        title="shopserve gateway",
        version="1",
        summary="Recommendations, ranking, demand forecasts and intent detection over ONNX models",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.grpc = None  # the GrpcServer once started; .port is the bound port
    _install_error_handlers(app, runtime.metrics)
    # Added innermost first: a request meets RequestContext, then BodyLimit, then Timeout.
    app.add_middleware(TimeoutMiddleware, seconds=settings.request_timeout_s, metrics=runtime.metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, metrics=runtime.metrics)
    app.add_middleware(RequestContextMiddleware, runtime=runtime)

    # Imported here: the routers import Runtime from this module.
    from serving.routers import admin, forecast, health, intent, models, rank, recommend

    for module in (health, models, admin, recommend, rank, forecast, intent):
        app.include_router(module.router)
    return app


async def _start_grpc(app: FastAPI, runtime: Runtime) -> None:
    """The gRPC API beside HTTP, over the same Runtime; a port it cannot bind stops start-up like HTTP's."""
    if not runtime.settings.grpc_enabled:
        return
    from serving.grpc_server import GrpcServer  # imported here: HTTP-only use never loads grpc or the stubs

    app.state.grpc = await GrpcServer.start(runtime)


def _install_sighup(runtime: Runtime) -> bool:
    """SIGHUP -> reload. Only possible on the main thread's loop (uvicorn); TestClient's loop is not."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, runtime.reload_in_background)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True
