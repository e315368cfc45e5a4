"""POST /v1/intent: intent, confidence, top-3 and the hand-off flag for one text or a list."""

from __future__ import annotations

from fastapi import APIRouter

from serving.app import Runtime
from serving.intent import IntentClassifier
from serving.metrics import StageTimer
from serving.routers.deps import ERRORS, RuntimeDep
from serving.schemas import IntentRequest, IntentResponse, IntentResult

router = APIRouter(tags=["customer service"])


async def classify(rt: Runtime, req: IntentRequest) -> IntentResponse:
    timer = StageTimer(rt.metrics, "intent")
    with timer.stage("tokenize"):
        clf: IntentClassifier = rt.artifacts.need("intent")
        name = rt.intent_model
        model = rt.model(name)
        inputs = clf.encode(req.all_texts)
    with timer.stage("model"):
        outputs = await rt.infer(name, inputs)
    with timer.stage("decide"):
        results = [IntentResult(**r) for r in clf.decide(clf.probabilities(outputs))]
    return IntentResponse(results=results, model_versions={name: model.version}, timings_ms=timer.ms)


@router.post("/v1/intent", response_model=IntentResponse, responses=ERRORS, summary="classify customer messages")
async def intent_route(req: IntentRequest, rt: RuntimeDep) -> IntentResponse:
    return await classify(rt, req)
