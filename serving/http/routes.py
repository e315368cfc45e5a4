"""One HTTP route per registered capability endpoint: the body model in, the handler, the answer model out."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from serving.http.deps import ERRORS, RuntimeDep
from serving.runtime.registry import Capability, Endpoint
from serving.runtime.runtime import Runtime


def _route(endpoint: Endpoint) -> Callable[..., Awaitable[Response]]:
    async def route(req: Any, rt: Runtime) -> Response:
        answer = await endpoint.handle(rt, req)
        # The answer is the response model already: written to JSON once by pydantic-core, where FastAPI
        # would dump it to a dict, validate that again and encode it (response_model stays for the docs).
        return Response(answer.__pydantic_serializer__.to_json(answer), media_type="application/json")

    # FastAPI reads the body model (a GET's query parameters model) and the dependency from the signature.
    request = Annotated[endpoint.request, Query()] if endpoint.method == "GET" else endpoint.request
    params = [
        inspect.Parameter("req", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=request),
        inspect.Parameter("rt", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=RuntimeDep),
    ]
    route.__signature__ = inspect.Signature(params, return_annotation=endpoint.response)  # type: ignore[attr-defined]
    route.__name__ = re.sub(r"(?<!^)(?=[A-Z])", "_", endpoint.rpc).lower() + "_route"  # the OpenAPI operation id
    return route


def capability_router(capabilities: Sequence[Capability]) -> APIRouter:
    router = APIRouter()
    for cap in capabilities:
        for ep in cap.endpoints:
            router.add_api_route(
                ep.path,
                _route(ep),
                methods=[ep.method],
                response_model=ep.response,
                responses=ERRORS,
                summary=ep.summary,
                tags=[ep.tag],
            )
    return router
