"""The request being answered: its id, set once by the transport (the HTTP middleware's x-request-id, the gRPC
servicer's) and read by the pipelines, so an answer's `request_id` is the id of the header and the server log."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def request_id() -> str:
    """The current request's id; one is made (and kept for this task) where no transport set one."""
    rid = REQUEST_ID.get()
    if rid is None:
        rid = new_request_id()
        REQUEST_ID.set(rid)
    return rid
