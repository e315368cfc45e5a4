"""The compute bound of the storefront mix: the models', index's and tokenizer's own time, no server.

    python -m bench.bound --artifacts artifacts --repository model_repository --payloads POOL.json --out DIR

For the request bodies the load test sends (the same pool file), each request's model inputs are built with
the gateway's own feature code (serving/recommend/features.py, serving/forecast/source.py; not timed), then
only the work a server cannot avoid is timed, one request at a time on one thread:
- recommend: user tower (ONNX Runtime) + FAISS search for `candidates` + DIN over them (ONNX Runtime);
- intent: tokenizer + the BERT the gateway serves on the CPU (the int8 one when exported);
- forecast: the TCN (ONNX Runtime).
A known user's history is the stored one (the load test sends no events, so the gateway's online store
is empty). Per endpoint the mean seconds per request; the bound of a mix is 1 / sum(share * mean): the
requests per second one core could answer if serving cost nothing. `bench/report.py` sets the gateway's
throughput at the objective against it (efficiency).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import onnxruntime as ort

from bench.checks import DEFAULT_MIX, parse_mix
from bench.inputs import FeatureStore, contiguous, served_lengths
from bench.payloads import load_pool
from serving.contracts.model_specs import DIN, INTENT, INTENT_INT8_NAME, TCN, USER_TOWER
from serving.recommend.features import din_inputs, user_tower_inputs
from serving.recommend.interests import merge_best
from serving.recommend.membership import isin

Work = Callable[[], object]
Feeds = dict[str, np.ndarray]


def session(path: Path, threads: int) -> ort.InferenceSession:
    """An ONNX Runtime session set up like the embedded backend's, with `threads` intra-op threads."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def newest_model(repository: Path, name: str) -> Path | None:
    versions = sorted((p for p in (repository / name).glob("[0-9]*") if (p / "model.onnx").is_file()), key=_version)
    return versions[-1] / "model.onnx" if versions else None


def _version(p: Path) -> int:
    return int(p.name) if p.name.isdigit() else -1


class Models:
    """The served models' sessions and the artifacts their inputs are built from."""

    def __init__(self, artifacts: Path, repository: Path, threads: int):
        self.artifacts, self.repository = artifacts, repository
        self.sessions: dict[str, ort.InferenceSession] = {}
        for name in (USER_TOWER.name, DIN.name, INTENT_INT8_NAME, INTENT.name, TCN.name):
            path = newest_model(repository, name)
            if path is not None:
                self.sessions[name] = session(path, threads)
        self.intent = INTENT_INT8_NAME if INTENT_INT8_NAME in self.sessions else INTENT.name

    def has(self, *names: str) -> bool:
        return all(n in self.sessions for n in names)

    def run(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        s = self.sessions[name]
        return s.run(None, feeds)

    def n_features(self, name: str) -> int:
        for i in self.sessions[name].get_inputs():
            if i.name == "user_features":
                return int(i.shape[-1])
        return 0


def recommend_work(m: Models, pool: list[dict[str, Any]]) -> list[Work]:
    fs = FeatureStore.load(m.artifacts)
    index = faiss.read_index(str(m.artifacts / "retrieval" / "items.faiss"))
    for name, value in _tuned(m.artifacts).items():  # the search settings export tuned, as the gateway sets them
        if value is not None and hasattr(faiss.extract_index_ivf(index) if name == "nprobe" else index, name):
            faiss.ParameterSpace().set_index_parameter(index, name, int(value))
    tower_len = served_lengths(m.repository, USER_TOWER.name).get("hist_item_ids")
    din_len = served_lengths(m.repository, DIN.name).get("hist_item_ids")
    n_tower, n_din = m.n_features(USER_TOWER.name), m.n_features(DIN.name)
    out: list[Work] = []
    for body in pool:
        user = fs.user_index(body.get("user_id"))
        if body.get("history") is not None:
            history = fs.items.ids.lookup(body["history"])
            history = history[history >= 0]
        elif user is not None and fs.users is not None:
            history = fs.users.history(user)
        else:
            continue  # the popularity fallback: no model work
        tower_in = contiguous(
            user_tower_inputs(history, fs.items, tower_len, fs.user_features(user, n_tower) if n_tower else None)
        )
        feats = fs.user_features(user, n_din) if n_din else None
        seen = history if body.get("exclude_seen", True) else history[:0]
        k = int(body.get("candidates", 200))
        # DIN's rows are built here from this request's own candidates, untimed: feature assembly is serving work.
        candidates = _search(index, m.run(USER_TOWER.name, tower_in)[0], k, seen, fs.items.blocked)
        din_in = contiguous(din_inputs(history, candidates, fs.items, din_len, feats))
        out.append(partial(_recommend, m, index, fs.items.blocked, tower_in, seen, k, din_in))
    return out


def _search(index: faiss.Index, vector: np.ndarray, k: int, seen: np.ndarray, blocked: np.ndarray | None) -> np.ndarray:
    """The index work of a recommendation: one FAISS search for k + |seen| per user vector (normalised; a
    multi-interest tower sends several in one call, merged by best score), the seen and blocked items dropped,
    the first k kept (the gateway widens the search in the rare case that is short)."""
    q = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1, index.d)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    scores, ids = index.search(q, min(index.ntotal, k + seen.size))
    if q.shape[0] > 1:
        ids = merge_best(scores, ids, ids.shape[1])[1]
    hit = ids[0][ids[0] >= 0]
    keep = ~isin(hit, seen)  # the gateway's own membership test (serving/recommend/membership.py)
    if blocked is not None:
        keep &= ~blocked[hit]
    return hit[keep][:k]


def _recommend(
    m: Models,
    index: faiss.Index,
    blocked: np.ndarray | None,
    tower_in: Feeds,
    seen: np.ndarray,
    k: int,
    din_in: Feeds,
) -> None:
    vector = m.run(USER_TOWER.name, tower_in)[0]
    _search(index, vector, k, seen, blocked)
    m.run(DIN.name, din_in)


def _tuned(artifacts: Path) -> dict[str, Any]:
    manifest = json.loads((artifacts / "manifest.json").read_text())
    params = manifest.get("retrieval", {}).get("index_params") or {}
    return {"nprobe": params.get("nprobe"), "ef_search": params.get("ef_search")}


def intent_work(m: Models, pool: list[dict[str, Any]]) -> list[Work]:
    from tokenizers import Tokenizer

    meta = json.loads((m.artifacts / "intent" / "intent.json").read_text())
    tok = Tokenizer.from_file(str(m.artifacts / "intent" / "tokenizer.json"))
    tok.enable_truncation(max_length=int(meta.get("max_len", 128)))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def work(texts: list[str]) -> None:
        enc = tok.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        m.run(m.intent, {"input_ids": ids, "attention_mask": mask})

    return [lambda b=body: work(b.get("texts") or [b["text"]]) for body in pool]


def _sales(m: Models):
    from serving.forecast.source import StoredSales

    manifest = json.loads((m.artifacts / "manifest.json").read_text())
    return StoredSales.load(m.artifacts / "features" / "sales.npz", manifest.get("forecast", {}))


def forecast_work(m: Models, pool: list[dict[str, Any]]) -> list[Work]:
    sales = _sales(m)
    out: list[Work] = []
    for body in pool:
        feeds = sales.build(body["store_id"], body["item_id"], None).inputs
        out.append(lambda feeds=feeds: m.run(TCN.name, feeds))
    return out


BUILDERS: dict[str, tuple[tuple[str, ...], Callable[[Models, list[dict[str, Any]]], list[Work]]]] = {
    "recommend": ((USER_TOWER.name, DIN.name), recommend_work),
    "intent": ((), intent_work),
    "forecast": ((TCN.name,), forecast_work),
}


def measure(works: list[Work], seconds: float, min_calls: int) -> np.ndarray:
    """Seconds per request, going round the requests for about `seconds` (after one untimed round)."""
    for w in works[: min(len(works), 32)]:
        w()  # first calls allocate ORT's buffers: not what a warm server pays
    times: list[float] = []
    end = time.perf_counter() + seconds
    i = 0
    while len(times) < min_calls or time.perf_counter() < end:
        w = works[i % len(works)]
        t0 = time.perf_counter()
        w()
        times.append(time.perf_counter() - t0)
        i += 1
    return np.asarray(times)


def bound(per_request_s: dict[str, float], mix: dict[str, float]) -> float | None:
    """Requests per second one core answers if only the measured work cost time; None when an endpoint of the
    mix was not measured."""
    if any(n not in per_request_s for n in mix if mix[n] > 0):
        return None
    total = sum(mix.values())
    mean = sum(w / total * per_request_s[n] for n, w in mix.items() if w > 0)
    return 1.0 / mean if mean > 0 else None


MODEL_FREE = ("events",)  # endpoints whose answers need no model: nothing for the bound to count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bound", description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--payloads", type=Path, required=True, help="the load test's request pool (bench.payloads)")
    p.add_argument("--mix", default=DEFAULT_MIX)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (the servers' pinned cores)")
    p.add_argument("--seconds", type=float, default=2.0, help="per endpoint")
    p.add_argument("--out", type=Path, required=True, help="folder for bound.json")
    ns = p.parse_args(argv)
    mix = parse_mix(ns.mix)
    pool = load_pool(ns.payloads)
    models = Models(ns.artifacts, ns.repository, ns.threads)
    endpoints: dict[str, dict[str, Any]] = {}
    for name in mix:
        if name in MODEL_FREE:
            endpoints[name] = {"mean_ms": 0.0, "note": "no model, index or tokenizer work"}
            continue
        needs, build = BUILDERS.get(name, ((), None))  # type: ignore[assignment]
        if (
            build is None
            or not pool.get(name)
            or not models.has(*needs, *((models.intent,) if name == "intent" else ()))
        ):
            print(f"[bound] {name}: not measured (no bodies, builder or model)", flush=True)
            continue
        works = build(models, pool[name])
        if not works:
            continue
        t = measure(works, ns.seconds, min_calls=len(works))
        endpoints[name] = {
            "mean_ms": float(t.mean() * 1e3),
            "p50_ms": float(np.median(t) * 1e3),
            "requests": len(works),
            "calls": int(t.size),
            "rps_one_core": float(1.0 / t.mean()),
        }
        print(f"[bound] {name}: {t.mean() * 1e3:.3f} ms per request (mean of {t.size}), p50 {np.median(t) * 1e3:.3f}")
    per_request = {n: e["mean_ms"] / 1e3 for n, e in endpoints.items()}
    result = {
        "mix": mix,
        "threads": ns.threads,
        "intent_model": models.intent,
        "endpoints": endpoints,
        "bound_rps": bound(per_request, mix),
    }
    ns.out.mkdir(parents=True, exist_ok=True)
    (ns.out / "bound.json").write_text(json.dumps(result, indent=1) + "\n")
    if result["bound_rps"]:
        print(f"[bound] mix {ns.mix}: {result['bound_rps']:.0f} req/s on {ns.threads} thread(s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
