"""Types every capability's request and response bodies share: the shop's ids, finite numbers, the
request base that forbids unknown fields, and the error body. Each capability keeps its own bodies and
limits in `serving/<capability>/schemas.py`; gRPC mirrors the same fields and limits.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

MAX_ID_CHARS = 128  # HTTP 422 beyond it; each capability's own limits are in its schemas.py

IntId = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]  # strict: true/false are not ids
StrId = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
ShopId = IntId | StrId
Finite = Annotated[float, Field(allow_inf_nan=False)]  # also on answers: a NaN or inf never leaves the gateway
Count = Annotated[int, Strict()]  # a JSON integer: true/false and 10.0 are refused
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class StrictRequest(BaseModel):
    """Unknown fields are a 422, not a silently ignored option."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str
    detail: Any
