"""/v1/recommend and /v1/rank as transport-free async functions (HTTP and gRPC call the same ones).

recommend: features -> user tower -> FAISS candidates -> DIN ranking -> top-k. Stored history is used
for known users who send none; an unknown user without history (or a known one with neither history
nor user features) gets the popularity list, flagged `fallback`.
rank: DIN click probabilities for the candidates the caller brings.
"""

from __future__ import annotations

import asyncio

import numpy as np

from serving.contracts.model_specs import DIN, USER_TOWER
from serving.recommend.features import FeatureStore, din_inputs, user_tower_inputs
from serving.recommend.retrieval import Retriever
from serving.recommend.schemas import RankRequest, RankResponse, RecommendRequest, RecommendResponse, ScoredItem
from serving.runtime.metrics import StageTimer
from serving.runtime.runtime import Runtime

TOWER_MODEL, RANKER_MODEL = USER_TOWER.name, DIN.name  # repository model names


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
        spec = rt.models().get(TOWER_MODEL)
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

    tower, ranker = rt.model(TOWER_MODEL), rt.model(RANKER_MODEL)
    retriever: Retriever = art.need("retriever")
    with timer.stage("user_tower"):
        inputs = user_tower_inputs(history, fs.items, tower.max_lengths.get("hist_item_ids"), feats)
        vector = (await rt.infer(TOWER_MODEL, inputs))[tower.output_names[0]]
    with timer.stage("retrieval"):
        _, found = await asyncio.to_thread(retriever.search, vector, req.candidates, seen, fs.items.blocked)
        candidates = found[0][found[0] >= 0]
    with timer.stage("ranking"):
        if candidates.size:
            inputs = din_inputs(history, candidates, fs.items, ranker.max_lengths.get("hist_item_ids"), feats)
            prob = np.asarray((await rt.infer(RANKER_MODEL, inputs))["prob"], dtype=np.float64).reshape(-1)
        else:
            prob = np.zeros(0)
        top = np.argsort(-prob, kind="stable")[: req.k]
    return RecommendResponse(
        items=_items(fs, candidates[top], prob[top]),
        fallback=False,
        model_versions={TOWER_MODEL: tower.version, RANKER_MODEL: ranker.version},
        timings_ms=timer.ms,
    )


async def rank(rt: Runtime, req: RankRequest) -> RankResponse:
    timer = StageTimer(rt.metrics, "rank")
    with timer.stage("features"):
        fs: FeatureStore = rt.artifacts.need("features")
        ranker = rt.model(RANKER_MODEL)
        history = fs.items.ids.require(req.history, "history")
        candidates = fs.items.ids.require(req.item_ids, "item_ids")
        n_feats = ranker.input("user_features")
        feats = fs.user_features(fs.user_index(req.user_id), n_feats.dims[0]) if n_feats is not None else None
        inputs = din_inputs(history, candidates, fs.items, ranker.max_lengths.get("hist_item_ids"), feats)
    with timer.stage("ranking"):
        prob = np.asarray((await rt.infer(RANKER_MODEL, inputs))["prob"], dtype=np.float64).reshape(-1)
        order = np.argsort(-prob, kind="stable")
    return RankResponse(
        items=_items(fs, candidates[order], prob[order]),
        model_versions={RANKER_MODEL: ranker.version},
        timings_ms=timer.ms,
    )
