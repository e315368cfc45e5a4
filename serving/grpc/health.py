"""grpc.health.v1 for the gateway: SERVING while the Runtime is ready (what /readyz says), NOT_SERVING while it
starts, drains or has no models, for "" and the Storefront service."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.contracts.errors import ShuttingDown
from serving.runtime.runtime import Runtime

log = logging.getLogger("serving.grpc")

SERVICE = "shopserve.v1.Storefront"
HEALTH_POLL_S = 1.0  # how often Watch subscribers learn about readiness changes
Code = grpc.StatusCode

ServingStatus = health_pb2.HealthCheckResponse.ServingStatus
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class RuntimeHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 following the Runtime's readiness (what /readyz says), for "" and the Storefront service.

    Not grpc_health's aio servicer: there, one Watch stream ending drops the condition every other watcher
    of its service waits on (they never hear of NOT_SERVING), and open Watch streams hold a stop's whole grace."""

    SERVICES = ("", SERVICE)

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.status: dict[str, ServingStatus] = dict.fromkeys(self.SERVICES, NOT_SERVING)
        self.shutting_down = False  # NOT_SERVING for good; readiness no longer consulted
        self.closed = False  # Watch streams end (the server is about to stop)
        self._change = asyncio.Event()  # set, and replaced, on every change

    def _changed(self) -> None:
        change, self._change = self._change, asyncio.Event()
        change.set()

    def set(self, status: ServingStatus) -> None:
        if self.shutting_down or all(s == status for s in self.status.values()):
            return
        self.status = dict.fromkeys(self.SERVICES, status)
        self._changed()

    def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING now, for Check and every Watch, and for good."""
        self.set(NOT_SERVING)
        self.shutting_down = True

    def close(self) -> None:
        """End every Watch stream (UNAVAILABLE, shutting down), so none holds the server's stop."""
        self.closed = True
        self._changed()

    async def refresh(self) -> None:
        if not self.shutting_down:
            self.set(SERVING if (await self.rt.readiness())[0] else NOT_SERVING)

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> Any:
        if request.service not in self.status:
            await context.abort(Code.NOT_FOUND, f"unknown service {request.service!r}")
        await self.refresh()  # a check sees the state of now, not of the last poll
        return health_pb2.HealthCheckResponse(status=self.status[request.service])

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        last = None
        while True:
            change = self._change  # taken before the status: a change while writing is not missed
            status = self.status.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if self.closed:
                meta = (("error-code", ShuttingDown.code),)
                await context.abort(Code.UNAVAILABLE, "the gateway is shutting down", trailing_metadata=meta)
            await change.wait()

    async def poll(self) -> None:
        while not self.shutting_down:
            try:
                await self.refresh()
            except Exception:  # a flaky backend probe must not end the health reports
                log.exception("gRPC health refresh failed")
            await asyncio.sleep(HEALTH_POLL_S)
