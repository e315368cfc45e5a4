"""The gateway's ASGI middleware (pure ASGI: no per-request task or body buffering, unlike BaseHTTPMiddleware).

A request meets RequestContext (request id, in-flight count for the graceful drain, metrics, the last
resort for an unforeseen error), then BodyLimit (413), then Timeout (504 past the deadline).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.contracts.errors import PayloadTooLarge, RequestTimeout, ServingError
from serving.runtime.context import REQUEST_ID, new_request_id
from serving.runtime.metrics import Metrics
from serving.runtime.runtime import Runtime

log = logging.getLogger("serving")

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def error_response(err: ServingError) -> JSONResponse:
    return JSONResponse({"error": err.code, "detail": err.detail}, status_code=err.status, headers=err.headers())


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read; an HTTPException so FastAPI passes it on instead of making it a 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


class RequestContextMiddleware:
    """Outermost: request id, in-flight count (graceful drain), latency and status per route, and the
    `server-timing: app;dur=<ms>` header (time in the app up to the answer's headers)."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app, self.rt = app, runtime

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = new_request_id()
        token = REQUEST_ID.set(rid)  # the pipelines put it in their answers (recommend's `request_id`)
        status, started = 500, False
        t0 = time.perf_counter()

        async def send_with_id(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                # Server-Timing (W3C): the time inside the app, so a client can tell it from the server loop,
                # the kernel and its own work (bench/: the time outside the model stages, split).
                app_ms = (time.perf_counter() - t0) * 1e3
                message.setdefault("headers", []).extend(
                    ((b"x-request-id", rid.encode()), (b"server-timing", b"app;dur=%.3f" % app_ms))
                )
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
            REQUEST_ID.reset(token)
            self.rt.inflight -= 1
            self.rt.metrics.inflight.dec()
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            m = self.rt.metrics
            m.child(m.requests, label, scope["method"], str(status)).inc()
            m.child(m.request_seconds, label, scope["method"]).observe(time.perf_counter() - t0)


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
