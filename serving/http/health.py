"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from serving.http.deps import RuntimeDep
from serving.http.schemas import HealthResponse, ReadyResponse
from serving.runtime.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, summary="the process is alive")
async def healthz() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "not ready: starting, draining or no models"}},
    summary="models loaded and warmed, not shutting down",
)
async def readyz(rt: RuntimeDep) -> JSONResponse:
    ready, models, components = await rt.readiness()
    body = ReadyResponse(ready=ready, draining=rt.draining, models=models, components=components)
    headers = {} if ready else {"Retry-After": str(rt.settings.retry_after_s)}
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=headers)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(rt: RuntimeDep) -> Response:
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE)
