"""The recommend capability: /v1/recommend and /v1/rank over the user tower, FAISS and DIN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.recommend import pipeline
from serving.recommend.features import ITEMS_FILE, FeatureStore
from serving.recommend.retrieval import Retriever
from serving.recommend.schemas import RankRequest, RankResponse, RecommendRequest, RecommendResponse
from serving.runtime.registry import (
    Capability,
    Endpoint,
    LoadContext,
    Loaded,
    Models,
    load_present,
)
from serving.runtime.settings import Settings

INDEX_FILE = "retrieval/items.faiss"


def load(ctx: LoadContext) -> Loaded:
    s = ctx.settings
    index_path = ctx.file("retrieval.file", INDEX_FILE)
    tuned = ctx.section("retrieval.index_params") or {}
    return {
        "features": load_present(s.artifacts / ITEMS_FILE, FeatureStore.load, s.artifacts),
        "retriever": load_present(
            index_path,
            Retriever.load,
            index_path,
            nprobe=s.nprobe or tuned.get("nprobe"),
            ef_search=s.ef_search or tuned.get("ef_search"),
            gpu=s.faiss_gpu,
        ),
    }


def check(parts: Mapping[str, Any], models: Models, settings: Settings) -> list[str]:
    features, retriever = parts.get("features"), parts.get("retriever")
    problems = []
    if features is not None and retriever is not None and retriever.ntotal != len(features.items):
        problems.append(f"FAISS index has {retriever.ntotal} items, the item table {len(features.items)}")
    tower = models.get(pipeline.TOWER_MODEL)
    if tower is not None and retriever is not None and tower.outputs and tower.outputs[0].dims[-1:] != (retriever.dim,):
        problems.append(f"user tower emits {tower.outputs[0].dims} vectors, the index holds {retriever.dim}-d ones")
    return problems


CAPABILITY = Capability(
    name="recommend",
    endpoints=(
        Endpoint(
            "Recommend",
            "/v1/recommend",
            RecommendRequest,
            RecommendResponse,
            pipeline.recommend,
            "top-k items for a user",
            "recommendations",
        ),
        Endpoint(
            "Rank",
            "/v1/rank",
            RankRequest,
            RankResponse,
            pipeline.rank,
            "score given candidates for a user",
            "recommendations",
        ),
    ),
    models=lambda settings, models: (pipeline.TOWER_MODEL, pipeline.RANKER_MODEL),
    load=load,
    check=check,
    components=("features", "retriever"),
)
