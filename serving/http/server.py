"""The uvicorn server `python -m serving` runs: a drain that starts at the signal, and a header-read timeout.

`GatewayServer` is a `uvicorn.Server` that freezes what start-up built out of the garbage collector's view,
and whose SIGTERM/SIGINT handler also calls `on_exit` on the event loop
(loop.call_soon_threadsafe: the handler runs between two bytecodes of whatever the main thread was doing).
The app factory passes a function that marks the runtime draining (/readyz 503 at once) and starts the gRPC
drain, so gRPC drains beside uvicorn's HTTP drain instead of after it; the lifespan shutdown then only waits
for what is still running.

`header_timeout_protocol(seconds)` is uvicorn's httptools protocol with a deadline for the request headers:
a connection whose headers are not complete `seconds` after it opened, or after a further request on it
began, gets 408 and is closed (a slow or stalled client can no longer hold a connection open forever).
Idle keep-alive connections keep uvicorn's own timeout; slow bodies meet the request deadline (504).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("serving")

_TIMEOUT_BODY = b"request headers not received in time"
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class GatewayServer(uvicorn.Server):
    """uvicorn's server, plus `on_exit()` run on the event loop as soon as the first exit signal arrives."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]):
        super().__init__(config)
        self.on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)  # the app's lifespan start-up runs in here: models and tables are loaded
        # What start-up built lives as long as the process: kept out of the collector's full passes, which
        # would otherwise walk it all again and again and stall requests for milliseconds each time.
        gc.collect()
        gc.freeze()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._run_on_exit)

    def _run_on_exit(self) -> None:
        try:
            self.on_exit()
        except Exception:  # the HTTP drain goes on; the lifespan shutdown still drains the rest
            log.exception("starting the drain failed")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """httptools HTTP/1.1 with a deadline for each request's headers (`header_timeout_s`)."""

    header_timeout_s = 10.0

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()  # the first request's headers: counted from the connection

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()  # a further request on a kept-alive connection: counted from its first byte

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        log.info(
            "closing a connection from %s: request headers not complete within %gs", self.client, self.header_timeout_s
        )
        if self.cycle is None or self.cycle.response_complete:  # no answer of an earlier request is being written
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's `http=`, with this header deadline."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": seconds})
