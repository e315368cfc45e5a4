"""/v1/recommend and /v1/rank as transport-free async functions (HTTP and gRPC call the same ones).

recommend: features -> user tower -> FAISS candidates -> DIN ranking -> re-rank -> top-k. Without a `history`
in the request, the stored history followed by the user's online events is used (read-your-writes, also for
users the export never saw); a request's unknown history ids are skipped and counted (`ignored`). Skipped
items are left out, streaks of skips down-weight a category, and a share of the slots may explore unseen
categories (serving/recommend/feedback.py). A user with no history at all (or a known one with neither
history nor user features) gets the popularity list, flagged `fallback`.
A model failing at run time (unreachable, past its budget, circuit open) degrades the answer, flagged
`degraded` with the reason: ranker down -> the retrieval order; user tower or index down -> the popular
items of the user's recent categories, then overall popularity.
An experiment (SERVING_EXPERIMENT, serving/experiments) gives the user an arm by a stable hash: it may change the
retrieval depth, the exploration share and the ranker (a second DIN). Every answer carries its `request_id` (the
x-request-id), and under an experiment its `arm`; the items it showed go to the experiment's ledger, and the
shadow arm, if any, ranks the same request in the background from the same features stage.
rank: DIN click probabilities for the candidates the caller brings.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.contracts.experiments import Variant
from serving.contracts.model_specs import DIN, USER_TOWER
from serving.experiments.service import active
from serving.recommend.catalogue import current_features
from serving.recommend.features import FeatureStore, din_inputs, user_tower_inputs
from serving.recommend.feedback import UserContext, explore_candidates, explore_slots, rerank, user_context
from serving.recommend.interests import search_interests
from serving.recommend.live_index import LiveIndex
from serving.recommend.retrieval import Retriever
from serving.recommend.schemas import RankRequest, RankResponse, RecommendRequest, RecommendResponse, ScoredItem
from serving.runtime.breaker import ModelUnavailable
from serving.runtime.context import request_id
from serving.runtime.metrics import StageTimer
from serving.runtime.registry import Artifacts
from serving.runtime.runtime import Runtime

TOWER_MODEL, RANKER_MODEL = USER_TOWER.name, DIN.name  # repository model names
LIVE = Variant(name="live")  # without an experiment: the request's depth, SERVING_EXPLORE_SHARE, DIN
RECENT_CATEGORIES = 20  # history items whose categories a degraded answer draws from


def _items(fs: FeatureStore, index: np.ndarray, scores: np.ndarray) -> list[ScoredItem]:
    ids = fs.items.ids.to_shop(index)
    return [ScoredItem(item_id=i, score=float(s)) for i, s in zip(ids, scores.tolist(), strict=True)]


async def recommend(rt: Runtime, req: RecommendRequest) -> RecommendResponse:
    exp = active(rt)
    arm = exp.assign(req.user_id) if exp is not None else LIVE
    timer = StageTimer(rt.metrics, "recommend")
    user = await _features(rt, req, timer)
    answer = await _recommend(rt, req, user, arm, timer)
    answer.request_id = request_id()  # the x-request-id: events that name it are credited to this answer's arm
    if exp is not None:
        answer.arm = arm.name
        items = [i.item_id for i in answer.items]
        await exp.served(answer.request_id, arm.name, items)
        if not answer.fallback:  # a popularity list is the same in every arm
            exp.shadow(items, functools.partial(_shadow, rt, req, user))
    return answer


@dataclass(frozen=True)
class _User:
    """What the features stage found; a shadow arm ranks from it too (no second online-store read)."""

    art: Artifacts
    fs: FeatureStore
    user: int | None
    ctx: UserContext
    seen: np.ndarray
    feats: np.ndarray | None


async def _features(rt: Runtime, req: RecommendRequest, timer: StageTimer) -> _User:
    art = rt.artifacts  # one snapshot for the whole request, even if a reload swaps it meanwhile
    with timer.stage("features"):  # the online store's read included
        fs: FeatureStore = art.need("features")
        user = fs.user_index(req.user_id)
        ctx = await user_context(rt, fs, art.parts.get("catalogue"), req.user_id, req.history, user)
        fs = ctx.features or fs  # the catalogue as it is now: items added or changed online included
        history = ctx.history
        seen = np.union1d(history, ctx.skipped) if req.exclude_seen else ctx.skipped  # skipped: always left out
        # Whether the tower takes user features decides if a known user without history can be personalised.
        spec = rt.models().get(TOWER_MODEL)
        n_feats = spec.input("user_features") if spec is not None else None
        feats = fs.user_features(user, n_feats.dims[0]) if n_feats is not None else None
    return _User(art, fs, user, ctx, seen, feats)


async def _recommend(
    rt: Runtime, req: RecommendRequest, u: _User, arm: Variant, timer: StageTimer
) -> RecommendResponse:
    """Retrieval, ranking and re-ranking with an arm's overrides (depth, exploration, ranker)."""
    art, fs, user, ctx, seen, feats = u.art, u.fs, u.user, u.ctx, u.seen, u.feats
    history = ctx.history
    personal = history.size > 0 or (user is not None and feats is not None)
    if not personal:
        with timer.stage("retrieval"):
            top = fs.items.popular(req.k, seen)
        reason = "unknown user without history" if user is None else "known user without history or features"
        return _answer(ctx, _popular_items(fs, top), {}, timer, fallback=True, fallback_reason=reason)

    versions: dict[str, int] = {}
    retriever: LiveIndex | Retriever | None = ctx.index or art.parts.get("retriever")
    try:
        tower = rt.model(TOWER_MODEL)
        if retriever is None:
            raise ModelUnavailable("retrieval index", art.problems.get("retriever", "not loaded"))
        with timer.stage("user_tower"):
            inputs = user_tower_inputs(history, fs.items, tower.max_lengths.get("hist_item_ids"), feats)
            vector = finite((await rt.infer(TOWER_MODEL, inputs))[tower.output_names[0]], TOWER_MODEL)
        versions[TOWER_MODEL] = tower.version
    except ModelUnavailable as exc:
        # No user vector or no index: the popular items of the categories the user just looked at.
        with timer.stage("retrieval"):
            top = fs.items.popular_in(fs.items.category[history[-RECENT_CATEGORIES:]], req.k, seen)
        return _degraded(fs, ctx, top, exc, "recent_categories", versions, timer)
    s = rt.settings
    n_explore = explore_slots(s.explore_share if arm.explore_share is None else arm.explore_share, req.k)
    depth = req.candidates if arm.candidates is None else max(arm.candidates, req.k)
    seen_cats = ctx.seen_categories(fs.items) if n_explore else ctx.skipped[:0]
    with timer.stage("retrieval"):
        scores, found = await rt.run_blocking(search_interests, retriever, vector, depth, seen, fs.items.blocked)
        keep = found[0] >= 0
        candidates, retrieval_scores = found[0][keep], scores[0][keep].astype(np.float64)
        retrieved = candidates.size
        if n_explore:  # unseen categories' best sellers, scored by DIN beside the retrieved ones
            extra = explore_candidates(fs.items, seen_cats, np.union1d(seen, candidates), n_explore)
            candidates = np.concatenate([candidates, extra])
    try:
        ranker = rt.model(arm.ranker)
        with timer.stage("ranking"):
            if candidates.size:
                inputs = din_inputs(history, candidates, fs.items, ranker.max_lengths.get("hist_item_ids"), feats)
                prob = finite(np.asarray((await rt.infer(arm.ranker, inputs))["prob"], np.float64), arm.ranker)
                prob = prob.reshape(-1)
            else:
                prob = np.zeros(0)
            cats = fs.items.category[candidates]  # re-rank: skip streaks, exploration slots
            top, prob = rerank(prob, cats, req.k, ctx.down, s.skip_downweight, seen_cats, n_explore)
    except ModelUnavailable as exc:
        top = np.arange(min(req.k, retrieved))  # FAISS returns best first: the retrieval order
        items = _items(fs, candidates[top], retrieval_scores[top])
        return _degraded(fs, ctx, items, exc, "retrieval_order", versions, timer)
    versions[arm.ranker] = ranker.version
    return _answer(ctx, _items(fs, candidates[top], prob[top]), versions, timer)


async def _shadow(rt: Runtime, req: RecommendRequest, user: _User, arm: Variant) -> Sequence[int | str] | None:
    """The shadow arm's items for the live request; None when it degraded. Its timings are no route's."""
    answer = await _recommend(rt, req, user, arm, StageTimer(None, "recommend"))
    return None if answer.degraded else [i.item_id for i in answer.items]


def _answer(
    ctx: UserContext,
    items: list[ScoredItem],
    versions: dict[str, int],
    timer: StageTimer,
    *,
    fallback: bool = False,
    fallback_reason: str | None = None,
    degraded: bool = False,
    degraded_reason: str | None = None,
) -> RecommendResponse:
    """The answer; an online store that could not be read degrades it (the stored history stood in)."""
    if ctx.store_error and not degraded:
        degraded, degraded_reason = True, f"stored history only: {ctx.store_error}"
    return RecommendResponse(
        items=items,
        fallback=fallback,
        fallback_reason=fallback_reason,
        degraded=degraded,
        degraded_reason=degraded_reason,
        ignored=ctx.ignored,
        model_versions=versions,
        timings_ms=timer.ms,
    )


def _popular_items(fs: FeatureStore, top: np.ndarray) -> list[ScoredItem]:
    pop = fs.items.popularity
    return _items(fs, top, pop[top] if pop is not None else np.zeros(top.shape[0]))


def _degraded(
    fs: FeatureStore,
    ctx: UserContext,
    items: np.ndarray | list[ScoredItem],
    exc: ModelUnavailable,
    fallback: str,
    versions: dict[str, int],
    timer: StageTimer,
) -> RecommendResponse:
    if timer.metrics is not None:  # a shadow run's are not the route's
        timer.metrics.degraded.labels(timer.route, fallback).inc()
    answer = _popular_items(fs, items) if isinstance(items, np.ndarray) else items
    reason = f"{fallback.replace('_', ' ')}: {exc.message}"
    return _answer(ctx, answer, versions, timer, degraded=True, degraded_reason=reason)


def finite(values: np.ndarray, model: str) -> np.ndarray:
    """Model outputs go into answers only when every value is a number (never NaN or inf)."""
    if not np.all(np.isfinite(values)):
        raise ModelUnavailable(model, "the model returned values that are not finite numbers")
    return values


async def rank(rt: Runtime, req: RankRequest) -> RankResponse:
    timer = StageTimer(rt.metrics, "rank")
    with timer.stage("features"):
        fs = current_features(rt.artifacts)
        ranker = rt.model(RANKER_MODEL)
        history = fs.items.ids.require(req.history, "history")
        candidates = fs.items.ids.require(req.item_ids, "item_ids")
        n_feats = ranker.input("user_features")
        feats = fs.user_features(fs.user_index(req.user_id), n_feats.dims[0]) if n_feats is not None else None
        inputs = din_inputs(history, candidates, fs.items, ranker.max_lengths.get("hist_item_ids"), feats)
    with timer.stage("ranking"):
        prob = finite(np.asarray((await rt.infer(RANKER_MODEL, inputs))["prob"], np.float64), RANKER_MODEL)
        prob = prob.reshape(-1)
        order = np.argsort(-prob, kind="stable")
    return RankResponse(
        items=_items(fs, candidates[order], prob[order]),
        model_versions={RANKER_MODEL: ranker.version},
        timings_ms=timer.ms,
    )
