"""The gateway application: `create_app(settings)` builds a FastAPI app around one `Runtime`.

The Runtime (serving/runtime/runtime.py) is given every registered capability (serving/capabilities.py);
HTTP routes and gRPC RPCs are built from the same registry. Start-up (lifespan): the Runtime loads and
checks models and artifacts, then the gRPC API starts on SERVING_GRPC_PORT over the same Runtime,
unless SERVING_GRPC_ENABLED=false. SIGHUP or `POST /admin/reload` reloads without dropping requests.

Shutdown (SIGTERM under `python -m serving`): at the signal, `begin_drain` marks the runtime draining
(/readyz 503) and starts the gRPC drain (health NOT_SERVING, new calls UNAVAILABLE, accepted ones answered)
while uvicorn stops accepting connections and lets open HTTP requests finish: both side by side, each within
SERVING_DRAIN_TIMEOUT_S (serving/http/server.py, serving/grpc/server.py). Then the lifespan shutdown waits
for the gRPC drain, the runtime waits for any request still counted in flight, the batchers run what is
queued, and the sessions close. Without a signal (TestClient, in-process use) the lifespan shutdown begins
the same drain itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence

from fastapi import FastAPI

from serving.capabilities import discover
from serving.http import admin, health, models
from serving.http.errors import install_error_handlers
from serving.http.fastpath import FastPath, capability_routes
from serving.http.middleware import BodyLimitMiddleware, RequestContextMiddleware, TimeoutMiddleware
from serving.http.routes import capability_router
from serving.runtime.backends.base import InferenceBackend
from serving.runtime.registry import Capability
from serving.runtime.runtime import Runtime
from serving.runtime.settings import Settings, get_settings

log = logging.getLogger("serving")


def create_app(
    settings: Settings | None = None,
    *,
    backend: InferenceBackend | None = None,
    capabilities: Sequence[Capability] | None = None,
) -> FastAPI:
    """The gateway. `backend` replaces the one the settings name (tests wrap or fake it); `capabilities`
    defaults to every registered one."""
    settings = settings or get_settings()
    logging.getLogger("serving").setLevel(settings.log_level.upper())
    caps = discover() if capabilities is None else tuple(capabilities)
    runtime = Runtime(settings, caps, backend=backend)

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
            begin_drain(app)  # already done at SIGTERM under uvicorn; idempotent
            if app.state.grpc is not None:
                await app.state.grpc.stop()
            await runtime.stop()

    app = FastAPI(
        title="shopserve gateway",
        version="1",
        summary="Recommendations, ranking, demand forecasts and intent detection over ONNX models",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.grpc = None  # the GrpcServer once started; .port is the bound port
    install_error_handlers(app, runtime.metrics)
    served = capability_router(caps)
    for router in (health.router, models.router, admin.router, served):
        app.include_router(router)
    # Added innermost first: a request meets RequestContext, then BodyLimit, then Timeout, then the fast path
    # of the capability endpoints (everything it does not take goes on to FastAPI's routing).
    endpoints = [e for cap in caps for e in cap.endpoints]
    app.add_middleware(FastPath, runtime=runtime, endpoints=capability_routes(served.routes, endpoints))
    app.add_middleware(TimeoutMiddleware, seconds=settings.request_timeout_s, metrics=runtime.metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, metrics=runtime.metrics)
    app.add_middleware(RequestContextMiddleware, runtime=runtime)
    return app


def begin_drain(app: FastAPI) -> None:
    """Start shutting down, on the event loop (the server calls it at SIGTERM; idempotent): /readyz 503 at
    once, and the gRPC drain begins beside the HTTP one."""
    app.state.runtime.draining = True
    if app.state.grpc is not None:
        app.state.grpc.begin_drain()


async def _start_grpc(app: FastAPI, runtime: Runtime) -> None:
    """The gRPC API beside HTTP, over the same Runtime; a port it cannot bind stops start-up like HTTP's."""
    if not runtime.settings.grpc_enabled:
        return
    from serving.grpc.server import GrpcServer  # imported here: HTTP-only use never loads grpc or the stubs

    app.state.grpc = await GrpcServer.start(runtime)


def _install_sighup(runtime: Runtime) -> bool:
    """SIGHUP -> reload. Only possible on the main thread's loop (uvicorn); TestClient's loop is not."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, runtime.reload_in_background)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True
