"""The naive peer's FastAPI app: same routes and bodies as the gateway (serving/contracts/schemas.py), naive inside.

Handlers are `async def` and call the models inline, so the event loop serves one request at a time:
the way a first version usually ends up (and adding a thread pool would only make eager PyTorch
threads fight over the same cores). Retrieval is a full matrix-vector product over every item vector.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException
from tokenizers import Tokenizer

from bench.baseline.models import EagerModels, Tables, intent_metadata, item_vectors
from serving.contracts.errors import InvalidInput
from serving.forecast.answer import forecast_days, replenishment_advice
from serving.forecast.schemas import ForecastRequest, ForecastResponse
from serving.forecast.source import SALES_FILE, StoredSales
from serving.http.schemas import ReadyResponse
from serving.intent.schemas import IntentRequest, IntentResponse, IntentResult, IntentScore
from serving.recommend.schemas import RecommendRequest, RecommendResponse, ScoredItem

VERSION = 1  # checkpoints carry no version; the peer reports 1 for every model


class Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.ms[stage] = round((time.perf_counter() - t0) * 1e3, 3)


def padded(history: np.ndarray, category: np.ndarray, max_hist: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The most recent max_hist items as model ids (+1) and their categories, at least one (padding) slot."""
    hist = history[-max_hist:]
    ids = np.zeros(max(hist.size, 1), dtype=np.int64)
    cats = np.zeros_like(ids)
    ids[: hist.size], cats[: hist.size] = hist + 1, category[hist] + 1
    return ids, cats, int(hist.size)


class NaivePeer:
    """Everything loaded once at start-up; `problems` says which endpoints cannot answer and why."""

    def __init__(self, artifacts: Path, device: str = "cpu"):
        self.m = EagerModels.load(artifacts, device)
        self.problems = dict(self.m.problems)
        self.tables = Tables.load(artifacts)
        self.vectors = item_vectors(self.m, self.tables) if "two_tower" in self.m.models else None
        meta = intent_metadata(artifacts)
        self.intent_meta = meta or {}
        self.tokenizer: Tokenizer | None = None
        if meta is not None:
            self.tokenizer = Tokenizer.from_file(str(artifacts / "intent" / "tokenizer.json"))
            self.tokenizer.enable_truncation(max_length=int(meta.get("max_len", 128)))
            self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        else:
            self.problems["intent"] = "artifacts/intent/intent.json not found"
        self.sales: StoredSales | None = None
        manifest_path = artifacts / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        if (artifacts / SALES_FILE).is_file() and isinstance(manifest.get("forecast"), dict):
            self.sales = StoredSales.load(artifacts / SALES_FILE, manifest["forecast"])
        else:
            self.problems["forecast"] = f"{artifacts / SALES_FILE} or the manifest's forecast section not found"

    def components(self) -> dict[str, str]:
        def state(*needs: str) -> str:
            missing = [self.problems[n] for n in needs if n in self.problems]
            return "; ".join(missing) or "ok"

        return {
            "retriever": state("two_tower", "din"),
            "intent": state("intent"),
            "forecast": state("tcn", "forecast"),
        }

    # ---- recommend

    def _rows(self, ids: list[Any]) -> np.ndarray:
        rows = []
        for i in ids:
            row = self.tables.item_row.get(i, self.tables.item_row.get(str(i)))
            if row is None:
                raise HTTPException(422, detail=f"unknown item id {i!r} in history")
            rows.append(row)
        return np.asarray(rows, dtype=np.int64)

    @torch.inference_mode()
    def recommend(self, req: RecommendRequest) -> RecommendResponse:
        t, tb, m = Timer(), self.tables, self.m
        with t("features"):
            user = tb.user_row.get(req.user_id)
            if req.history is not None:
                history = self._rows(list(req.history))
            elif user is not None:
                history = tb.history(user)
            else:
                history = np.zeros(0, dtype=np.int64)
            feats = None
            n_feats = len(m.configs["two_tower"].get("user_feature_cardinalities") or ())
            if n_feats and user is not None and tb.user_features is not None:
                feats = np.maximum(tb.user_features[user, :n_feats], -1) + 1  # raw codes, -1 unknown -> 0
        if history.size == 0 and feats is None:
            with t("retrieval"):
                order = np.argsort(-tb.popularity, kind="stable")
                order = order[tb.available[order]][: req.k]
            items = [ScoredItem(item_id=tb.item_ids[i].item(), score=float(tb.popularity[i])) for i in order]
            reason = "unknown user without history" if user is None else "known user without history or features"
            return RecommendResponse(
                items=items, fallback=True, fallback_reason=reason, model_versions={}, timings_ms=t.ms
            )

        with t("user_tower"):
            tt = m.configs["two_tower"]
            ids, cats, n = padded(history, tb.category, int(tt["max_hist"]))
            u_feats = feats if feats is not None else np.zeros(n_feats, dtype=np.int64)
            user_vec = m.models["two_tower"].user_tower(  # type: ignore[operator]
                m.tensor(ids[None, :]), m.tensor(cats[None, :]), m.tensor(np.array([n])), m.tensor(u_feats[None, :])
            )
            user_vec = user_vec.float().cpu().numpy()[0]
        with t("retrieval"):
            assert self.vectors is not None
            # every item, every request; a multi-interest tower's [K, dim]: each item's best vector
            scores = (self.vectors @ np.atleast_2d(user_vec).T).max(axis=1)
            scores[~tb.available] = -np.inf
            if req.exclude_seen:
                scores[history] = -np.inf
            n = min(req.candidates, int(np.isfinite(scores).sum()))
            candidates = np.argpartition(-scores, n - 1)[:n] if n else np.zeros(0, dtype=np.int64)
        with t("ranking"):
            dc = m.configs["din"]
            ids, cats, n = padded(history, tb.category, int(dc["max_hist"]))
            rows = candidates.size
            d_feats = len(dc.get("user_feature_cardinalities") or ())
            uf = (feats[:d_feats] if feats is not None else np.zeros(d_feats, dtype=np.int64))[None, :]
            logit = m.models["din"](
                m.tensor(np.repeat(ids[None, :], rows, axis=0)),
                m.tensor(np.repeat(cats[None, :], rows, axis=0)),
                m.tensor(np.full(rows, n)),
                m.tensor(candidates + 1),
                m.tensor(tb.category[candidates] + 1),
                m.tensor(np.repeat(uf, rows, axis=0)),
            )
            prob = torch.sigmoid(logit).float().cpu().numpy()
            top = np.argsort(-prob, kind="stable")[: req.k]
        items = [ScoredItem(item_id=tb.item_ids[candidates[i]].item(), score=float(prob[i])) for i in top]
        return RecommendResponse(
            items=items,
            fallback=False,
            model_versions={"user_tower": VERSION, "din": VERSION},
            timings_ms=t.ms,
        )

    # ---- intent

    @torch.inference_mode()
    def intent(self, req: IntentRequest) -> IntentResponse:
        t, meta = Timer(), self.intent_meta
        assert self.tokenizer is not None
        with t("tokenize"):
            enc = self.tokenizer.encode_batch(req.all_texts)
            ids = np.asarray([e.ids for e in enc], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        with t("model"):
            logits = self.m.models["intent"](self.m.tensor(ids), self.m.tensor(mask))
            probs = torch.softmax(logits.float() / float(meta.get("temperature", 1.0)), dim=-1).cpu().numpy()
        with t("decide"):
            labels = list(meta["labels"])
            handoff_intents = set(meta.get("handoff_intents") or ())
            results = []
            for p in probs:
                top = np.argsort(-p, kind="stable")[:3]
                best = labels[top[0]]
                results.append(
                    IntentResult(
                        intent=best,
                        confidence=float(p[top[0]]),
                        top=[IntentScore(intent=labels[j], probability=float(p[j])) for j in top],
                        handoff=bool(p[top[0]] < float(meta.get("threshold", 0.0)) or best in handoff_intents),
                    )
                )
        return IntentResponse(results=results, model_versions={"intent_bert": VERSION}, timings_ms=t.ms)

    # ---- forecast

    @torch.inference_mode()
    def forecast(self, req: ForecastRequest) -> ForecastResponse:
        t = Timer()
        assert self.sales is not None
        with t("features"):
            try:
                built = self.sales.build(req.store_id, req.item_id, req.history)
            except InvalidInput as exc:
                raise HTTPException(422, detail=str(exc)) from exc
        with t("model"):
            x = built.inputs
            q, mean = self.m.models["tcn"](
                *(
                    self.m.tensor(x[k])
                    for k in ("past_features", "future_features", "series_scale", "store_ids", "category_ids")
                )
            )
            quantiles = q.double().cpu().numpy()[0]
            daily_mean = mean.double().cpu().numpy()[0]
        with t("replenishment"):
            days = forecast_days(quantiles, built.quantile_levels, req.horizon, built.first_date)
            plan = replenishment_advice(quantiles, built.quantile_levels, req, built.calibration, daily_mean)
        return ForecastResponse(
            store_id=req.store_id,
            item_id=req.item_id,
            days=days,
            replenishment=plan,
            model_versions={"tcn": VERSION},
            timings_ms=t.ms,
        )


def create_app(artifacts: Path, device: str = "cpu") -> FastAPI:
    peer = NaivePeer(artifacts, device)
    app = FastAPI(title="naive peer (bench/baseline)")

    def need(component: str) -> None:
        state = peer.components()[component]
        if state != "ok":
            raise HTTPException(503, detail=state)

    @app.get("/readyz", response_model=ReadyResponse)
    async def readyz() -> ReadyResponse:
        return ReadyResponse(
            ready=True, draining=False, models=dict.fromkeys(peer.m.models, VERSION), components=peer.components()
        )

    @app.post("/v1/recommend", response_model=RecommendResponse)
    async def recommend(req: RecommendRequest) -> RecommendResponse:
        need("retriever")
        return peer.recommend(req)

    @app.post("/v1/intent", response_model=IntentResponse)
    async def intent(req: IntentRequest) -> IntentResponse:
        need("intent")
        return peer.intent(req)

    @app.post("/v1/forecast", response_model=ForecastResponse)
    async def forecast(req: ForecastRequest) -> ForecastResponse:
        need("forecast")
        return peer.forecast(req)

    return app
