"""The recommend capability: /v1/recommend and /v1/rank over the user tower, FAISS and DIN; /v1/items changes
the catalogue they draw from (the item tower embeds added items into a delta index beside FAISS)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.recommend import items, pipeline
from serving.recommend.catalogue import LiveCatalogue
from serving.recommend.features import ITEMS_FILE, FeatureStore
from serving.recommend.item_encoder import ITEM_TOWER_FILE, ItemCoding, ItemEncoder
from serving.recommend.item_schemas import DeleteItemsRequest, ItemsRequest, ItemsResponse
from serving.recommend.retrieval import Retriever
from serving.recommend.schemas import RankRequest, RankResponse, RecommendRequest, RecommendResponse
from serving.runtime.registry import (
    Capability,
    Endpoint,
    LoadContext,
    Loaded,
    Missing,
    Models,
    load_present,
    read_artifact,
)
from serving.runtime.settings import Settings

INDEX_FILE = "retrieval/items.faiss"


def _coding(path: str) -> ItemCoding:
    with np.load(path, allow_pickle=False) as f:
        return ItemCoding.from_npz({k: f[k] for k in f.files})


def load(ctx: LoadContext) -> Loaded:
    s = ctx.settings
    index_path = ctx.file("retrieval.file", INDEX_FILE)
    tuned = ctx.section("retrieval.index_params") or {}
    items_path = s.artifacts / ITEMS_FILE
    features = load_present(items_path, FeatureStore.load, s.artifacts)
    retriever = load_present(
        index_path,
        Retriever.load,
        index_path,
        nprobe=s.nprobe or tuned.get("nprobe"),
        ef_search=s.ef_search or tuned.get("ef_search"),
        gpu=s.retrieval_gpu,
    )
    # The item tower embeds items added online; without it they are kept out of retrieval (popular lists only).
    encoder_path = ctx.file("models.item_tower.file", ITEM_TOWER_FILE)
    encoder = load_present(encoder_path, ItemEncoder, encoder_path)
    if isinstance(features, Missing):
        catalogue: LiveCatalogue | Missing = features
    else:
        catalogue = LiveCatalogue(
            features,
            None if isinstance(retriever, Missing) else retriever,
            None if isinstance(encoder, Missing) else encoder,
            read_artifact(items_path, _coding, str(items_path)),
        )
    return {"features": features, "retriever": retriever, "catalogue": catalogue}


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
        Endpoint(
            "UpsertItems",
            "/v1/items",
            ItemsRequest,
            ItemsResponse,
            items.upsert,
            "add items or change their fields (category, brand, price, stock): recommended at once, no retraining",
            "catalogue",
        ),
        Endpoint(
            "DeleteItems",
            "/v1/items/delete",
            DeleteItemsRequest,
            ItemsResponse,
            items.delete,
            "take items out of every recommendation list",
            "catalogue",
        ),
    ),
    models=lambda settings, models: (pipeline.TOWER_MODEL, pipeline.RANKER_MODEL),
    load=load,
    check=check,
    components=("features", "retriever", "catalogue"),
)
