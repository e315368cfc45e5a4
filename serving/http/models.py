"""What is being served: model versions and checksums, the backend, the manifest's facts, and per
capability its endpoints, the models it answers with and its artifacts' state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serving.http.deps import RuntimeDep
from serving.http.schemas import ModelsResponse

router = APIRouter(tags=["operations"])

_MANIFEST_FACTS = ("format", "created", "retrieval", "models", "data")


@router.get("/v1/models", response_model=ModelsResponse, summary="served model versions, checksums and backend")
async def list_models(rt: RuntimeDep) -> ModelsResponse:
    infos = rt.models()
    manifest: dict[str, Any] | None = None
    if rt.manifest is not None:
        manifest = {k: rt.manifest[k] for k in _MANIFEST_FACTS if k in rt.manifest}
    return ModelsResponse(
        backend=rt.backend.kind if rt.backend is not None else rt.settings.backend,
        models=[info.describe() for info in infos.values()],
        manifest=manifest,
        capabilities=rt.describe_capabilities(),
    )
