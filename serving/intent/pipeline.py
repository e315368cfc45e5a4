"""/v1/intent as a transport-free async function: intent, confidence, top-3, the hand-off flag and its reason.

With the model unavailable at run time (unreachable, past its budget, circuit open) every message is
handed off to a human, flagged `degraded`: the safe answer for a customer-service queue."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serving.contracts.model_specs import INTENT, INTENT_INT8_NAME
from serving.intent.codec import IntentCodec
from serving.intent.schemas import IntentRequest, IntentResponse, IntentResult
from serving.runtime.backends.base import ModelInfo
from serving.runtime.breaker import ModelUnavailable
from serving.runtime.metrics import StageTimer
from serving.runtime.runtime import Runtime

INTENT_FP32, INTENT_INT8 = INTENT.name, INTENT_INT8_NAME


def pick_intent_model(choice: str, backend: str, models: Mapping[str, ModelInfo]) -> str:
    """`auto`: the int8 model where it is served by the embedded backend on the CPU only (dynamic int8 is a
    CPU optimisation; on a GPU or behind Triton the fp32 model is the one to use), else the fp32 one."""
    if choice != "auto":
        return choice
    int8 = models.get(INTENT_INT8)
    on_cpu = int8 is not None and bool(int8.providers) and all(p == "CPUExecutionProvider" for p in int8.providers)
    return INTENT_INT8 if backend == "embedded" and on_cpu else INTENT_FP32


def serving_model(rt: Runtime) -> str:
    """The repository model behind /v1/intent (SERVING_INTENT_MODEL, `auto` resolved)."""
    return pick_intent_model(rt.settings.intent_model, rt.settings.backend, rt.models())


async def classify(rt: Runtime, req: IntentRequest) -> IntentResponse:
    timer = StageTimer(rt.metrics, "intent")
    with timer.stage("tokenize"):
        codec: IntentCodec = rt.artifacts.need("intent")
        name = serving_model(rt)
        model = rt.model(name)
        inputs = codec.encode(req.all_texts)
    try:
        with timer.stage("model"):
            outputs = await rt.infer(name, inputs)
            probs = codec.probabilities(outputs)
            ood = codec.ood_scores(outputs, probs)
            if not np.all(np.isfinite(probs)) or (ood is not None and not np.all(np.isfinite(ood))):
                raise ModelUnavailable(name, "the model returned values that are not finite numbers")
    except ModelUnavailable as exc:
        # No model, no guess: every message goes to a human, which is always a safe answer.
        rt.metrics.degraded.labels("intent", "handoff").inc()
        handoff = IntentResult(intent=None, confidence=0.0, top=[], handoff=True, handoff_reason="model_unavailable")
        return IntentResponse(
            results=[handoff] * len(req.all_texts),
            degraded=True,
            degraded_reason=f"handed off: {exc.message}",
            model_versions={},
            timings_ms=timer.ms,
        )
    with timer.stage("decide"):
        results = [IntentResult(**r) for r in codec.decide(probs, ood)]
    return IntentResponse(results=results, model_versions={name: model.version}, timings_ms=timer.ms)
