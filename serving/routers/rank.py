"""POST /v1/rank: DIN click probabilities for the candidates the caller brings."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from serving.app import DIN, Runtime
from serving.features import FeatureStore, din_inputs
from serving.metrics import StageTimer
from serving.routers.deps import ERRORS, RuntimeDep
from serving.schemas import RankRequest, RankResponse, ScoredItem

router = APIRouter(tags=["recommendations"])


async def rank(rt: Runtime, req: RankRequest) -> RankResponse:
    timer = StageTimer(rt.metrics, "rank")
    with timer.stage("features"):
        fs: FeatureStore = rt.artifacts.need("features")
        ranker = rt.model(DIN)
        history = fs.items.ids.require(req.history, "history")
        candidates = fs.items.ids.require(req.item_ids, "item_ids")
        n_feats = ranker.input("user_features")
        feats = fs.user_features(fs.user_index(req.user_id), n_feats.dims[0]) if n_feats is not None else None
        inputs = din_inputs(history, candidates, fs.items, ranker.max_lengths.get("hist_item_ids"), feats)
    with timer.stage("ranking"):
        prob = np.asarray((await rt.infer(DIN, inputs))["prob"], dtype=np.float64).reshape(-1)
        order = np.argsort(-prob, kind="stable")
    ids = fs.items.ids.to_shop(candidates[order])
    items = [ScoredItem(item_id=i, score=float(s)) for i, s in zip(ids, prob[order].tolist(), strict=True)]
    return RankResponse(items=items, model_versions={DIN: ranker.version}, timings_ms=timer.ms)


@router.post("/v1/rank", response_model=RankResponse, responses=ERRORS, summary="score given candidates for a user")
async def rank_route(req: RankRequest, rt: RuntimeDep) -> RankResponse:
    return await rank(rt, req)
