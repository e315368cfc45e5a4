"""Dependency aliases for the routes (FastAPI full-stack template style)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from serving.contracts.schemas import ErrorBody
from serving.runtime.runtime import Runtime
from serving.runtime.settings import Settings


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request.
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

# Error answers every inference route can give, for the OpenAPI page.
ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "request body over SERVING_MAX_BODY_BYTES"},
    422: {"model": ErrorBody, "description": "invalid input; `detail[].loc` names the field"},
    503: {
        "model": ErrorBody,
        "description": "model or artifact not loaded, queue full, or shutting down (Retry-After)",
    },
    504: {"model": ErrorBody, "description": "no answer within SERVING_REQUEST_TIMEOUT_S"},
}
