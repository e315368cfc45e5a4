"""The intent capability: /v1/intent over the BERT classifier (fp32 or int8) and its tokenizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.intent import pipeline
from serving.intent.codec import METADATA_FILE, IntentCodec
from serving.intent.schemas import IntentRequest, IntentResponse
from serving.runtime.registry import (
    Capability,
    Endpoint,
    LoadContext,
    Loaded,
    Models,
    load_present,
)
from serving.runtime.settings import Settings


def load(ctx: LoadContext) -> Loaded:
    s = ctx.settings
    return {"intent": load_present(s.artifacts / METADATA_FILE, IntentCodec.load, s.artifacts, s.handoff_threshold)}


def check(parts: Mapping[str, Any], models: Models, settings: Settings) -> list[str]:
    codec: IntentCodec | None = parts.get("intent")
    bert = models.get(pipeline.pick_intent_model(settings.intent_model, settings.backend, models))
    probs = bert.outputs[-1] if bert is not None and bert.outputs else None
    if codec is None or probs is None or not probs.dims or probs.dims[-1] in (-1, len(codec.meta.labels)):
        return []
    return [f"intent model has {probs.dims[-1]} outputs, the metadata {len(codec.meta.labels)} labels"]


CAPABILITY = Capability(
    name="intent",
    endpoints=(
        Endpoint(
            "Intent",
            "/v1/intent",
            IntentRequest,
            IntentResponse,
            pipeline.classify,
            "classify customer messages",
            "customer service",
        ),
    ),
    models=lambda settings, models: (pipeline.pick_intent_model(settings.intent_model, settings.backend, models),),
    load=load,
    check=check,
    components=("intent",),
)
