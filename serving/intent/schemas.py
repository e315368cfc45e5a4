"""Bodies of /v1/intent."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from serving.contracts.schemas import Finite, StrictRequest

# Limits (HTTP 422 beyond them).
MAX_TEXTS = 64
MAX_TEXT_CHARS = 2000

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)]


class IntentRequest(StrictRequest):
    text: Text | None = None
    texts: list[Text] | None = Field(None, min_length=1, max_length=MAX_TEXTS)

    @model_validator(mode="after")
    def _one_of(self) -> IntentRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of `text` or `texts`")
        return self

    @property
    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "my card has not arrived yet"}],
            "oneOf": [{"required": ["text"]}, {"required": ["texts"]}],  # exactly one of them
        },
    )


HandoffReason = Literal["out_of_scope", "low_confidence", "handoff_intent", "model_unavailable"]


class IntentScore(BaseModel):
    intent: str
    probability: Finite


class IntentResult(BaseModel):
    intent: str | None = Field(description="null when the answer is degraded (no model ran)")
    confidence: Finite
    top: list[IntentScore] = Field(description="the three most likely intents")
    handoff: bool = Field(description="true: route to a human (low confidence or a sensitive intent)")
    handoff_reason: HandoffReason | None = Field(
        None,
        description="why it is handed off (null when it is not): out_of_scope (like no intent the model was "
        "trained on), low_confidence (under the calibrated threshold), handoff_intent (an intent always handed "
        "off), model_unavailable (degraded answer)",
    )


class IntentResponse(BaseModel):
    results: list[IntentResult] = Field(description="one per text, in request order")
    degraded: bool = Field(False, description="true: the model was unavailable; every text is handed off to a human")
    degraded_reason: str | None = None
    model_versions: dict[str, int]
    timings_ms: dict[str, float]
