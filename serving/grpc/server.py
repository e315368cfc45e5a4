"""The storefront gRPC API (serving/proto/storefront.proto) beside the HTTP one, over the same Runtime.

Each registered capability endpoint is an RPC: its message becomes the HTTP API's pydantic request (same
limits, serving/grpc/messages.py), the endpoint's handler runs (same code path), and the answer is converted back.
Errors become status codes:

| cause | status |
|---|---|
| invalid field (pydantic), unknown id (InvalidInput) | INVALID_ARGUMENT, details "field: message" |
| queue full (Overloaded), message too large | RESOURCE_EXHAUSTED, trailing metadata retry-after |
| SERVING_REQUEST_TIMEOUT_S or the client's deadline passed | DEADLINE_EXCEEDED |
| bytes that are not the RPC's message (undecodable, invalid UTF-8) | INVALID_ARGUMENT, no trace logged |
| model or artifact not loaded, shutting down (Unavailable) | UNAVAILABLE |
| anything else | INTERNAL, a request id in the details and the trace in the log |

Trailing metadata `error-code` carries the HTTP API's `error` value ("overloaded", "model_not_loaded"...).
The standard health service reports SERVING while the Runtime is ready, NOT_SERVING while it starts,
drains or has no models; server reflection is on when grpcio-reflection is installed.

The Storefront methods are registered with raw-bytes handlers (no request deserializer): the servicer
parses each message itself, so garbage is the client's INVALID_ARGUMENT, not an UNKNOWN with a trace.

Drain (`GrpcServer.begin_drain`, at SIGTERM; `stop` awaits it): health turns NOT_SERVING (Check and every
Watch), new calls get UNAVAILABLE with `error-code: shutting_down` and `retry-after`, and the calls the
servicer already holds (running, or waiting in the micro-batcher's queue) run to their answer, up to
SERVING_DRAIN_TIMEOUT_S; only then does the grpc server stop, with a short grace for the calls still on the
wire. grpc's own `server.stop(grace)` is not the drain: it does not keep serving while it waits, a health
Watch stream holds it for the whole grace, and past it every call is CANCELLED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import BaseModel, ValidationError

from serving.contracts.errors import (
    Forbidden,
    InvalidInput,
    Overloaded,
    PayloadTooLarge,
    ReloadFailed,
    RequestTimeout,
    ServingError,
    ShuttingDown,
    Unavailable,
)
from serving.grpc import messages as conv
from serving.grpc.health import SERVICE, RuntimeHealth
from serving.proto import storefront_pb2 as pb
from serving.runtime.context import REQUEST_ID, new_request_id
from serving.runtime.registry import Capability, Endpoint
from serving.runtime.runtime import Runtime

log = logging.getLogger("serving.grpc")

STOP_GRACE_S = 1.0  # once the drained calls are answered: for calls still on the wire when the server stops
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
    request: type[Message]
    reply: type[Message]

    @property
    def name(self) -> str:
        return self.endpoint.rpc

    @property
    def path(self) -> str:  # the metrics' route label
        return f"/{SERVICE}/{self.name}"

    def decode(self, data: bytes) -> Message:
        """The request message from the bytes on the wire; DecodeError when they are not one."""
        return self.request.FromString(data)

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
            method = methods[ep.rpc]
            out[ep.rpc] = Rpc(ep, conv.message_class(method.input_type), conv.message_class(method.output_type))
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


class StorefrontServicer:
    """Each registered endpoint's RPC answers through `_answer`; RPCs no capability serves have no handler
    and stay UNIMPLEMENTED. It counts the calls it holds, so a drain knows when the last accepted one is answered."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.rpcs = rpcs(runtime.capabilities)
        self.inflight = 0  # calls accepted and not answered yet
        self.draining = False  # set when the drain begins: new calls get UNAVAILABLE
        self._idle = asyncio.Event()
        self._idle.set()

    def add_to(self, server: grpc.aio.Server) -> None:
        """Raw-bytes handlers (request_deserializer=None): `_call` parses, so garbage is INVALID_ARGUMENT."""
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._method(rpc), request_deserializer=None, response_serializer=rpc.reply.SerializeToString
            )
            for name, rpc in self.rpcs.items()
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_registered_method_handlers(SERVICE, handlers)  # as the generated stubs do: no lookup per call

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is held (at most `timeout` s); -> whether none is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        return self.inflight == 0

    def _method(self, rpc: Rpc) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Message]]:
        async def method(data: bytes, context: grpc.aio.ServicerContext) -> Message:
            return await self._answer(rpc, data, context)

        method.__name__ = rpc.name
        return method

    async def _answer(self, rpc: Rpc, data: bytes, context: grpc.aio.ServicerContext) -> Message:
        """Refused while draining; else in-flight counts (the drain's, the runtime's), metrics, failure -> status."""
        rt, t0 = self.rt, time.perf_counter()
        if self.draining:
            failure = Failure(
                Code.UNAVAILABLE, ShuttingDown.code, "the gateway is shutting down", rt.settings.retry_after_s
            )
            rt.metrics.errors.labels(failure.error).inc()
            rt.metrics.requests.labels(rpc.path, "GRPC", failure.code.name).inc()
            await context.abort(failure.code, failure.details, trailing_metadata=failure.metadata())
        status = "CANCELLED"  # stays so when the client goes away or its deadline cancels the call
        token = REQUEST_ID.set(new_request_id())  # as the HTTP middleware's x-request-id: answers carry it
        self.inflight += 1
        self._idle.clear()
        rt.inflight += 1
        rt.metrics.inflight.inc()
        try:
            result = await self._call(rpc, data, context)
            if isinstance(result, Failure):
                status = result.code.name
                rt.metrics.errors.labels(result.error).inc()
                await context.abort(result.code, result.details, trailing_metadata=result.metadata())
            status = "OK"
            return result
        finally:
            REQUEST_ID.reset(token)
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.set()
            rt.inflight -= 1
            rt.metrics.inflight.dec()
            rt.metrics.requests.labels(rpc.path, "GRPC", status).inc()
            rt.metrics.request_seconds.labels(rpc.path, "GRPC").observe(time.perf_counter() - t0)

    async def _call(self, rpc: Rpc, data: bytes, context: grpc.aio.ServicerContext) -> Message | Failure:
        try:
            message = rpc.decode(data)
        except Exception:  # DecodeError: not the wire format, invalid UTF-8 in a string... a pure function of the bytes
            return Failure(Code.INVALID_ARGUMENT, "invalid_message", f"request is not a valid {rpc.request.__name__}")
        try:
            req = rpc.parse(message)
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
            rid = REQUEST_ID.get()
            log.exception("unhandled error in gRPC %s (request %s)", rpc.name, rid)
            return Failure(Code.INTERNAL, "internal_error", f"internal error; request id {rid} is in the server log")


# ---------------------------------------------------------------------------------------------------------
# Server


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    """A started grpc.aio server; `port` is the bound one (SERVING_GRPC_PORT=0 picks a free port)."""

    def __init__(
        self, server: grpc.aio.Server, servicer: StorefrontServicer, health_servicer: RuntimeHealth, port: int
    ):
        self.server, self.servicer, self.health, self.port = server, servicer, health_servicer, port
        self._poller: asyncio.Task | None = None
        self._drain: asyncio.Task | None = None

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
        servicer = StorefrontServicer(runtime)
        servicer.add_to(server)
        health_servicer = RuntimeHealth(runtime)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        _enable_reflection(server)
        try:
            bound = server.add_insecure_port(_address(host, port))
        except RuntimeError as exc:  # grpc raises when it cannot bind
            raise RuntimeError(f"cannot serve gRPC on {_address(host, port)}: {exc}") from exc
        await health_servicer.refresh()
        await server.start()
        self = cls(server, servicer, health_servicer, bound)
        self._poller = asyncio.get_running_loop().create_task(health_servicer.poll())
        log.info("gRPC API on %s", _address(host, bound))
        return self

    @property
    def draining(self) -> bool:
        return self._drain is not None

    def begin_drain(self, timeout: float | None = None) -> asyncio.Task:
        """Start draining now, on the event loop (SIGTERM); idempotent. -> the task that ends once stopped.

        In one step, no await between: health NOT_SERVING, then new calls refused with UNAVAILABLE; the calls
        already held run on to their answer for up to `timeout` s (default SERVING_DRAIN_TIMEOUT_S)."""
        if self._drain is None:
            limit = self.servicer.rt.settings.drain_timeout_s if timeout is None else timeout
            self.health.enter_graceful_shutdown()
            self.servicer.draining = True
            self._drain = asyncio.get_running_loop().create_task(self._drain_and_stop(limit), name="grpc-drain")
        return self._drain

    async def stop(self, timeout: float | None = None) -> None:
        """Drain (begun now unless SIGTERM began it already), then stop the server. Idempotent."""
        await asyncio.shield(self.begin_drain(timeout))

    async def _drain_and_stop(self, timeout: float) -> None:
        t0 = time.perf_counter()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if self.servicer.inflight:
            log.info("gRPC draining: %d calls to answer", self.servicer.inflight)
        idle = await self.servicer.wait_idle(timeout)
        if not idle:
            log.warning(
                "gRPC drain: %d calls still running after %.3g s, cancelling them", self.servicer.inflight, timeout
            )
        self.health.close()
        await self.server.stop(STOP_GRACE_S if idle else 0)
        log.info("gRPC stopped %.2f s after the drain began", time.perf_counter() - t0)


def _enable_reflection(server: grpc.aio.Server) -> None:
    """Server reflection (grpcurl, Postman) when grpcio-reflection is installed; it is not a dependency."""
    try:
        from grpc_reflection.v1alpha import reflection
    except ImportError:
        return
    names = (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
