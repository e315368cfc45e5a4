"""The storefront gRPC API (serving/proto/storefront.proto) beside the HTTP one, over the same Runtime.

Each registered capability endpoint is an RPC: its message becomes the HTTP API's pydantic request (same
limits, serving/grpc/messages.py), the endpoint's handler runs (same code path), and the answer is converted back.
Errors become status codes:

| cause | status |
|---|---|
| invalid field (pydantic), unknown id (InvalidInput) | INVALID_ARGUMENT, details "field: message" |
| queue full (Overloaded), message too large | RESOURCE_EXHAUSTED, trailing metadata retry-after |
| SERVING_REQUEST_TIMEOUT_S or the client's deadline passed | DEADLINE_EXCEEDED |
| model or artifact not loaded, shutting down (Unavailable) | UNAVAILABLE |
| anything else | INTERNAL, a request id in the details and the trace in the log |

Trailing metadata `error-code` carries the HTTP API's `error` value ("overloaded", "model_not_loaded"...).
The standard health service reports SERVING while the Runtime is ready, NOT_SERVING while it starts,
drains or has no models; server reflection is on when grpcio-reflection is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import BaseModel, ValidationError

from serving.contracts.errors import (
    Forbidden,
    InvalidInput,
    Overloaded,
    PayloadTooLarge,
    ReloadFailed,
    RequestTimeout,
    ServingError,
    Unavailable,
)
from serving.grpc import messages as conv
from serving.proto import storefront_pb2 as pb
from serving.proto import storefront_pb2_grpc as pb_grpc
from serving.runtime.registry import Capability, Endpoint
from serving.runtime.runtime import Runtime

log = logging.getLogger("serving.grpc")

SERVICE = "shopserve.v1.Storefront"
HEALTH_POLL_S = 1.0  # how often Watch subscribers learn about readiness changes
Code = grpc.StatusCode

# Most specific first: Overloaded is an Unavailable, but the client should back off, not fail over.
_STATUS: tuple[tuple[type[ServingError], grpc.StatusCode], ...] = (
    (InvalidInput, Code.INVALID_ARGUMENT),
    (Overloaded, Code.RESOURCE_EXHAUSTED),
    (PayloadTooLarge, Code.RESOURCE_EXHAUSTED),
    (Unavailable, Code.UNAVAILABLE),
    (RequestTimeout, Code.DEADLINE_EXCEEDED),
    (Forbidden, Code.PERMISSION_DENIED),
    (ReloadFailed, Code.FAILED_PRECONDITION),
)


def status_for(exc: ServingError) -> grpc.StatusCode:
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), Code.INTERNAL)


# pydantic tags each alternative of the id union (int | str) in the error location.
_ID_ALTERNATIVES: dict[str, type] = {"constrained-int": int, "constrained-str": str}


def validation_details(exc: ValidationError, limit: int = 5) -> str:
    """'k: Input should be less than or equal to 100; text: ...', one entry per field.

    For an id, only the alternative matching the type the client sent is reported (a too long string
    id is not also "not a valid integer")."""
    fields: dict[str, list[tuple[bool, str]]] = {}
    for err in exc.errors():
        loc, msg = list(err["loc"]), err["msg"]
        matches = True
        if loc and loc[-1] in _ID_ALTERNATIVES:
            kind = _ID_ALTERNATIVES[str(loc.pop())]
            matches = isinstance(err["input"], kind)
            if err["input"] is None:
                msg, matches = "an id needs int_value or string_value", True
        fields.setdefault(".".join(map(str, loc)) or "request", []).append((matches, msg))
    parts = []
    for name, found in fields.items():
        msg = next((m for ok, m in found if ok), found[0][1])
        parts.append(f"{name}: {msg}")
    more = f" (and {len(parts) - limit} more)" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


# ---------------------------------------------------------------------------------------------------------
# Storefront service


@dataclass(frozen=True)
class Rpc:
    """One RPC: proto request -> the endpoint's pydantic request -> its handler -> proto answer."""

    endpoint: Endpoint
    reply: type[Message]

    @property
    def name(self) -> str:
        return self.endpoint.rpc

    @property
    def path(self) -> str:  # the metrics' route label
        return f"/{SERVICE}/{self.name}"

    def parse(self, request: Message) -> BaseModel:
        return conv.to_request(request, self.endpoint.request)

    def render(self, answer: BaseModel) -> Message:
        return conv.to_message(answer, self.reply)


def rpcs(capabilities: Sequence[Capability]) -> dict[str, Rpc]:
    """Every capability endpoint as an RPC of the Storefront service; an endpoint the proto lacks is an error."""
    methods = pb.DESCRIPTOR.services_by_name[SERVICE.rsplit(".", 1)[1]].methods_by_name
    out: dict[str, Rpc] = {}
    for cap in capabilities:
        for ep in cap.endpoints:
            if ep.rpc not in methods:
                raise RuntimeError(f"{cap.name}: RPC {ep.rpc} is not in serving/proto/storefront.proto")
            out[ep.rpc] = Rpc(ep, conv.message_class(methods[ep.rpc].output_type))
    return out


@dataclass(frozen=True)
class Failure:
    code: grpc.StatusCode
    error: str  # the HTTP API's error code, for metrics and the client
    details: str
    retry_after: int | None = None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        meta = (("error-code", self.error),)
        return meta if self.retry_after is None else (*meta, ("retry-after", str(self.retry_after)))


class StorefrontServicer(pb_grpc.StorefrontServicer):
    """Each registered endpoint's RPC answers through `_answer`; RPCs no capability serves stay UNIMPLEMENTED."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.rpcs = rpcs(runtime.capabilities)
        for name, rpc in self.rpcs.items():
            setattr(self, name, self._method(rpc))

    def _method(self, rpc: Rpc) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]:
        async def method(request: Any, context: grpc.aio.ServicerContext) -> Message:
            return await self._answer(rpc, request, context)

        method.__name__ = rpc.name
        return method

    async def _answer(self, rpc: Rpc, request: Any, context: grpc.aio.ServicerContext) -> Message:
        """In-flight count (graceful drain), metrics, and the failure as a status."""
        rt, t0 = self.rt, time.perf_counter()
        status = "CANCELLED"  # stays so when the client goes away or its deadline cancels the call
        rt.inflight += 1
        rt.metrics.inflight.inc()
        try:
            result = await self._call(rpc, request, context)
            if isinstance(result, Failure):
                status = result.code.name
                rt.metrics.errors.labels(result.error).inc()
                await context.abort(result.code, result.details, trailing_metadata=result.metadata())
            status = "OK"
            return result
        finally:
            rt.inflight -= 1
            rt.metrics.inflight.dec()
            rt.metrics.requests.labels(rpc.path, "GRPC", status).inc()
            rt.metrics.request_seconds.labels(rpc.path, "GRPC").observe(time.perf_counter() - t0)

    async def _call(self, rpc: Rpc, request: Any, context: grpc.aio.ServicerContext) -> Message | Failure:
        try:
            req = rpc.parse(request)
        except ValidationError as exc:
            return Failure(Code.INVALID_ARGUMENT, "validation_error", validation_details(exc))
        limit = self.rt.settings.request_timeout_s
        remaining = context.time_remaining()
        if remaining is not None:  # answer before the client gives up, so its queued rows are abandoned
            limit = min(limit, remaining)
        try:
            async with asyncio.timeout(limit):
                answer = await rpc.endpoint.handle(self.rt, req)
            return rpc.render(answer)
        except TimeoutError:
            return Failure(Code.DEADLINE_EXCEEDED, RequestTimeout.code, f"no answer within {limit:.3g} s")
        except ServingError as exc:
            return Failure(status_for(exc), exc.code, exc.message, exc.retry_after)
        except Exception:  # the last resort: logged with its trace, answered without it
            rid = uuid.uuid4().hex[:16]
            log.exception("unhandled error in gRPC %s (request %s)", rpc.name, rid)
            return Failure(Code.INTERNAL, "internal_error", f"internal error; request id {rid} is in the server log")


# ---------------------------------------------------------------------------------------------------------
# Health


class RuntimeHealth(health.aio.HealthServicer):
    """grpc.health.v1 following the Runtime's readiness (what /readyz says), for "" and the Storefront service."""

    def __init__(self, runtime: Runtime):
        super().__init__()
        self.rt = runtime

    async def refresh(self) -> None:
        ready = (await self.rt.readiness())[0]
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE):
            await self.set(service, status)  # ignored once enter_graceful_shutdown() ran

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> Any:
        await self.refresh()  # a check sees the state of now, not of the last poll
        return await super().Check(request, context)

    async def poll(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a flaky backend probe must not end the health reports
                log.exception("gRPC health refresh failed")
            await asyncio.sleep(HEALTH_POLL_S)


# ---------------------------------------------------------------------------------------------------------
# Server


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    """A started grpc.aio server; `port` is the bound one (SERVING_GRPC_PORT=0 picks a free port)."""

    def __init__(self, server: grpc.aio.Server, health_servicer: RuntimeHealth, port: int):
        self.server, self.health, self.port = server, health_servicer, port
        self._poller: asyncio.Task | None = None

    @classmethod
    async def start(cls, runtime: Runtime, host: str | None = None, port: int | None = None) -> GrpcServer:
        s = runtime.settings
        host = s.host if host is None else host
        port = s.grpc_port if port is None else port
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", s.max_body_bytes),  # the HTTP body limit
                ("grpc.so_reuseport", 0),  # a port already in use is an error, not a second listener
            ]
        )
        pb_grpc.add_StorefrontServicer_to_server(StorefrontServicer(runtime), server)
        health_servicer = RuntimeHealth(runtime)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        _enable_reflection(server)
        try:
            bound = server.add_insecure_port(_address(host, port))
        except RuntimeError as exc:  # grpc raises when it cannot bind
            raise RuntimeError(f"cannot serve gRPC on {_address(host, port)}: {exc}") from exc
        await health_servicer.refresh()
        await server.start()
        self = cls(server, health_servicer, bound)
        self._poller = asyncio.get_running_loop().create_task(health_servicer.poll())
        log.info("gRPC API on %s", _address(host, bound))
        return self

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING at once, refuse new calls, let running ones finish within `grace` seconds. Idempotent."""
        await self.health.enter_graceful_shutdown()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        await self.server.stop(grace)


def _enable_reflection(server: grpc.aio.Server) -> None:
    """Server reflection (grpcurl, Postman) when grpcio-reflection is installed; it is not a dependency."""
    try:
        from grpc_reflection.v1alpha import reflection
    except ImportError:
        return
    names = (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
