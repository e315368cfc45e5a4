"""Bodies of the operations routes: health, readiness, served models, reload."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.contracts.schemas import StrictRequest


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    draining: bool
    models: dict[str, int]
    components: dict[str, str] = Field(description="'ok' or why a part is unavailable")


class ModelsResponse(BaseModel):
    backend: str
    models: list[dict[str, Any]]
    manifest: dict[str, Any] | None
    capabilities: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per capability: endpoints, models (served version or null), components"
    )


class ReloadRequest(StrictRequest):
    models: list[str] | None = Field(None, max_length=64, description="default: every served model")


class ReloadResponse(BaseModel):
    changed: dict[str, dict[str, int | None]]
    unchanged: list[str]
    artifacts_reloaded: bool
