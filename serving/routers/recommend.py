"""POST /v1/recommend: features -> user tower -> FAISS candidates -> DIN ranking -> top-k.

Stored history is used for known users who send none; an unknown user without history (or a known
one with neither history nor user features) gets the popularity list, flagged `fallback`.
"""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter

from serving.app import DIN, USER_TOWER, Runtime
from serving.features import FeatureStore, din_inputs, user_tower_inputs
from serving.metrics import StageTimer
from serving.retrieval import Retriever
from serving.routers.deps import ERRORS, RuntimeDep
from serving.schemas import RecommendRequest, RecommendResponse, ScoredItem

router = APIRouter(tags=["recommendations"])


def _items(fs: FeatureStore, index: np.ndarray, scores: np.ndarray) -> list[ScoredItem]:
    ids = fs.items.ids.to_shop(index)
    return [ScoredItem(item_id=i, score=float(s)) for i, s in zip(ids, scores.tolist(), strict=True)]


async def recommend(rt: Runtime, req: RecommendRequest) -> RecommendResponse:
    art = rt.artifacts  # one snapshot for the whole request, even if a reload swaps it meanwhile
    timer = StageTimer(rt.metrics, "recommend")
    with timer.stage("features"):
        fs: FeatureStore = art.need("features")
        user = fs.user_index(req.user_id)
        if req.history is not None:
            history = fs.items.ids.require(req.history, "history")
        elif user is not None and fs.users is not None:
            history = fs.users.history(user)
        else:
            history = np.zeros(0, dtype=np.int64)
        seen = np.unique(history) if req.exclude_seen else None
        # Whether the tower takes user features decides if a known user without history can be personalised.
        spec = rt.backend.models().get(USER_TOWER) if rt.backend is not None else None
        n_feats = spec.input("user_features") if spec is not None else None
        feats = fs.user_features(user, n_feats.dims[0]) if n_feats is not None else None

    personal = history.size > 0 or (user is not None and feats is not None)
    if not personal:
        with timer.stage("retrieval"):
            top = fs.items.popular(req.k, seen)
            pop = fs.items.popularity
            scores = pop[top] if pop is not None else np.zeros(top.shape[0])
        reason = "unknown user without history" if user is None else "known user without history or features"
        return RecommendResponse(
            items=_items(fs, top, scores), fallback=True, fallback_reason=reason, model_versions={}, timings_ms=timer.ms
        )

    tower, ranker = rt.model(USER_TOWER), rt.model(DIN)
    retriever: Retriever = art.need("retriever")
    with timer.stage("user_tower"):
        inputs = user_tower_inputs(history, fs.items, tower.max_lengths.get("hist_item_ids"), feats)
        vector = (await rt.infer(USER_TOWER, inputs))[tower.output_names[0]]
    with timer.stage("retrieval"):
        _, found = await asyncio.to_thread(retriever.search, vector, req.candidates, seen, fs.items.blocked)
        candidates = found[0][found[0] >= 0]
    with timer.stage("ranking"):
        if candidates.size:
            inputs = din_inputs(history, candidates, fs.items, ranker.max_lengths.get("hist_item_ids"), feats)
            prob = np.asarray((await rt.infer(DIN, inputs))["prob"], dtype=np.float64).reshape(-1)
        else:
            prob = np.zeros(0)
        top = np.argsort(-prob, kind="stable")[: req.k]
    return RecommendResponse(
        items=_items(fs, candidates[top], prob[top]),
        fallback=False,
        model_versions={USER_TOWER: tower.version, DIN: ranker.version},
        timings_ms=timer.ms,
    )


@router.post("/v1/recommend", response_model=RecommendResponse, responses=ERRORS, summary="top-k items for a user")
async def recommend_route(req: RecommendRequest, rt: RuntimeDep) -> RecommendResponse:
    return await recommend(rt, req)
