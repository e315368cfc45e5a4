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
    if codec is None or bert is None or not bert.outputs:
        return []
    outputs = {t.name: t for t in bert.outputs}
    issues = []
    probs = outputs.get("probs", bert.outputs[-1])
    if probs.dims and probs.dims[-1] not in (-1, len(codec.meta.labels)):
        issues.append(f"intent model has {probs.dims[-1]} outputs, the metadata {len(codec.meta.labels)} labels")
    rule = codec.meta.ood
    if rule is not None and rule.needs not in outputs:
        issues.append(f"the out-of-scope score '{rule.score}' needs the intent model output '{rule.needs}'")
    elif (
        rule is not None
        and rule.means is not None
        and outputs[rule.needs].dims[-1:] not in ((-1,), rule.means.shape[1:])
    ):
        issues.append(
            f"intent model embedding has {outputs[rule.needs].dims[-1]} dims, the OOS statistics {rule.means.shape[1]}"
        )
    return issues


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
