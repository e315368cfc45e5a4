"""POST /admin/reload: load new model versions and artifacts beside the serving ones, then swap.

Enabled only when SERVING_ADMIN_TOKEN is set to a non-blank value (send it as X-Admin-Token); otherwise
the route answers 404 as if absent. `kill -HUP <pid>` does the same reload without the endpoint.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Header
from starlette.exceptions import HTTPException

from serving.contracts.errors import Forbidden
from serving.contracts.schemas import ErrorBody
from serving.http.deps import RuntimeDep
from serving.http.schemas import ReloadRequest, ReloadResponse

router = APIRouter(tags=["operations"])


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses={
        403: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "reload refused; old versions stay"},
    },
    summary="reload models and artifacts without dropping requests",
)
async def reload(
    rt: RuntimeDep,
    body: ReloadRequest | None = None,
    x_admin_token: Annotated[str | None, Header()] = None,
) -> ReloadResponse:
    token = rt.settings.admin_token
    if token is None or not token.get_secret_value().strip():  # an empty token (a blank env line) is no password
        raise HTTPException(404, "Not Found")
    if x_admin_token is None or not secrets.compare_digest(x_admin_token.encode(), token.get_secret_value().encode()):
        raise Forbidden("missing or wrong X-Admin-Token")
    result = await rt.reload(body.models if body else None)
    return ReloadResponse(**result)
