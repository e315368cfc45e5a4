"""Error handlers: every error answer has the {"error", "detail"} body; nothing leaks a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.contracts.errors import ServingError
from serving.http.middleware import error_response
from serving.runtime.metrics import Metrics

log = logging.getLogger("serving")


def serving_error_answer(exc: ServingError, method: str, path: str, metrics: Metrics) -> JSONResponse:
    metrics.errors.labels(exc.code).inc()
    if exc.internal:  # addresses and transport text: the log's, never the client's
        log.warning("%s %s answered %s: %s (%s)", method, path, exc.code, exc.message, exc.internal)
    return error_response(exc)


def validation_error_answer(errors: Sequence[Mapping[str, Any]], metrics: Metrics) -> JSONResponse:
    """422 naming each field: `loc` starts with "body" for fields of the request body."""
    metrics.errors.labels("validation_error").inc()
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
    return JSONResponse({"error": "validation_error", "detail": detail}, status_code=422)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return serving_error_answer(exc, request.method, request.url.path, metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_answer(exc.errors(), metrics)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_error_answer(exc, metrics)


def http_error_answer(exc: StarletteHTTPException, metrics: Metrics) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status_code, "http_error")
    metrics.errors.labels(code).inc()
    return JSONResponse({"error": code, "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
