"""The capability endpoints' hot path: a JSON POST goes from the ASGI call to its handler and back directly.

FastAPI's routing, dependency solving, Request objects and exception middleware cost about a quarter of a
millisecond per request on one core (bench/results/profile-*.md), as much as some of the models. For the
requests they would handle in the standard way this middleware does the same work with less machinery:
the body is read (the body limit's receive still counts it), parsed and validated by the endpoint's
request model in the same (python) mode FastAPI uses, the handler runs, and its answer is written by
pydantic-core. Error answers are the same ones the app's exception handlers give (serving/http/errors.py);
`scope["route"]` is set to the registered route, so the metrics label the request as before.

Anything else, such as another method, a body that is not JSON, an empty body or one that does not parse,
goes on to FastAPI unchanged (the body it read is handed on), so every edge keeps FastAPI's behaviour.
The routes stay registered with FastAPI: the OpenAPI page and that fallback use them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.contracts.errors import ServingError
from serving.http.errors import http_error_answer, serving_error_answer, validation_error_answer
from serving.http.middleware import ASGIApp, Scope
from serving.runtime.registry import Endpoint
from serving.runtime.runtime import Runtime

_JSON_HEADERS = [(b"content-type", b"application/json")]


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


class FastPath:
    """Innermost middleware: POST `path` with a JSON body -> `endpoint.handle(runtime, request)`."""

    def __init__(self, app: ASGIApp, runtime: Runtime, endpoints: Mapping[str, tuple[Endpoint, APIRoute]]):
        self.app, self.rt, self.endpoints = app, runtime, dict(endpoints)

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        hit = self.endpoints.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if hit is None:
            return await self.app(scope, receive, send)
        content_type = next((v for k, v in scope.get("headers") or () if k == b"content-type"), None)
        if not _is_json(content_type):
            return await self.app(scope, receive, send)
        try:
            body = await _read_body(receive)
        except StarletteHTTPException as exc:  # over the body limit while reading (BodyLimitMiddleware)
            return await http_error_answer(exc, self.rt.metrics)(scope, receive, send)
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):  # empty, unparsable, not an object: FastAPI's answer, as always
            return await self.app(scope, _replay(body, receive), send)
        endpoint, route = hit
        scope["route"] = route
        try:
            req = endpoint.request.model_validate(data)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False)]
            return await validation_error_answer(errors, self.rt.metrics)(scope, receive, send)
        try:
            answer = await endpoint.handle(self.rt, req)
        except ServingError as exc:
            return await serving_error_answer(exc, "POST", scope["path"], self.rt.metrics)(scope, receive, send)
        payload = answer.__pydantic_serializer__.to_json(answer)
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Callable) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Callable) -> Callable:
    """A receive that gives the already read body once, then whatever comes next."""
    given = False

    async def again() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def capability_routes(routes: list, endpoints: list[Endpoint]) -> dict[str, tuple[Endpoint, APIRoute]]:
    """{path: (endpoint, its registered FastAPI route)} for every capability endpoint."""
    by_path = {r.path: r for r in routes if isinstance(r, APIRoute) and "POST" in r.methods}
    return {e.path: (e, by_path[e.path]) for e in endpoints if e.path in by_path}
