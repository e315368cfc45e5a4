"""The gateway's error types and how each becomes an HTTP answer.

Everything below the routes raises these (never HTTPException), so the same errors can be mapped to
gRPC status codes too. Every answer body has the same shape: {"error": code, "detail": ...}; for 422
the detail is a list of {"loc", "msg", "type"} naming the field, as FastAPI's own validation does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ServingError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, retry_after: int | None = None, internal: str | None = None):
        super().__init__(message)
        self.message = message  # what the client is told: short, no internal addresses or transport text
        self.retry_after = retry_after
        self.internal = internal  # the full story, for the server log only

    @property
    def detail(self) -> Any:
        return self.message

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class InvalidInput(ServingError):
    """A well-formed request that the catalogue rejects (unknown ids...). 422 naming the field."""

    status, code = 422, "invalid_request"

    def __init__(self, loc: Sequence[str | int], message: str, kind: str = "value_error"):
        super().__init__(f"{'.'.join(map(str, loc))}: {message}")
        self.loc, self.msg, self.kind = ["body", *loc], message, kind

    @property
    def detail(self) -> Any:
        return [{"loc": self.loc, "msg": self.msg, "type": self.kind}]


class Unavailable(ServingError):
    """Something the request needs is not there (a model, an artifact, the Triton server). 503."""

    status, code = 503, "unavailable"


class ModelNotLoaded(Unavailable):
    code = "model_not_loaded"

    def __init__(self, model: str, reason: str = ""):
        super().__init__(f"model not loaded: {model}" + (f" ({reason})" if reason else ""))
        self.model = model


class Overloaded(Unavailable):
    """The bounded queue is full: shed load now instead of queueing without limit."""

    code = "overloaded"


class ShuttingDown(Unavailable):
    code = "shutting_down"


class Forbidden(ServingError):
    status, code = 403, "forbidden"


class RequestTimeout(ServingError):
    status, code = 504, "timeout"


class PayloadTooLarge(ServingError):
    status, code = 413, "payload_too_large"


class ReloadFailed(ServingError):
    """A reload was refused; the previous models keep serving."""

    status, code = 409, "reload_failed"


class RepositoryError(RuntimeError):
    """The model repository on disk is unusable (bad config.pbtxt, config and ONNX graph disagree)."""
