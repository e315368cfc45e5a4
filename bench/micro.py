"""Micro-benchmarks: FAISS index kinds, DIN rows/s by batch size, BERT fp32 vs int8.

    python -m bench.micro --parts faiss,din,bert --out DIR [--items 1000000] [--device cpu|cuda]

- FAISS: a catalogue of `--items` vectors scattered around the served index's item vectors (the trained
  geometry, at the catalogue's own nearest-neighbour grain; the quick catalogue has only thousands of items),
  queried with real user-tower vectors of stored users; `--synthetic` (or no served index): clustered random
  vectors and noisy item vectors as queries. Exact search is the ground truth. Built and measured with
  export/retrieval.py, the code that builds the served index; the sweep over nprobe / efSearch gives the
  recall-vs-speed curve.
  Throughput is given both batched (1000 queries per call) and one query per call (what the gateway
  does per request).
- DIN / BERT: ONNX Runtime sessions over the exported model files (the gateway's embedded backend), one
  intra-op thread per pinned core, inputs shaped like the gateway's (bench/inputs.py). BERT int8 is the
  exported dynamic-quantised variant; quality is the agreement of the two on real messages and, with
  BANKING77's labels, their accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        w.writeheader()
        for r in rows:
            w.writerow({k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()})
    return path


def _log(msg: str) -> None:
    print(f"[micro] {msg}", flush=True)


def timed(fn: Callable[[], object], seconds: float, min_calls: int = 3) -> np.ndarray:
    """Call fn repeatedly for about `seconds` (at least min_calls times) -> per-call seconds."""
    times = []
    end = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


# ---------------------------------------------------------------------------------------------------------
# FAISS


def clustered_vectors(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    """n vectors around `clusters` random centres (log-normal cluster sizes, like categories), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    sizes = rng.lognormal(0.0, 1.0, clusters)
    members = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 262_144):  # in chunks: one float64 temporary of 1M x dim would double the memory
        e = min(n, s + 262_144)
        out[s:e] = centres[members[s:e]] + 0.6 * rng.standard_normal((e - s, dim)).astype(np.float32)
    return out


def search_settings(kind: str, params: dict[str, int], k: int) -> tuple[str, list[int]]:
    """The knob a kind is tuned by and the values to sweep, cheapest first (IVF: nprobe 1, 2, 4 .. nlist)."""
    if kind.startswith("ivf"):
        nlist = params["nlist"]
        return "nprobe", sorted({min(nlist, 2**i) for i in range(int(math.log2(nlist)) + 1)})
    if kind == "hnsw":
        return "ef_search", [k, int(k * 1.5), 2 * k, 4 * k]
    return "", [0]


def served_like(
    artifacts: Path, repository: Path, n_items: int, n_queries: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """n_items vectors scattered around the served index's item vectors, with real user-tower vectors as queries.

    Each synthetic item is a served item plus isotropic noise of the catalogue's own grain (the median
    distance of an item to its nearest neighbour), so the 1M set keeps the trained embeddings' geometry.
    None when the served index cannot give its vectors back."""
    import faiss

    from bench.inputs import FeatureStore, served_lengths, user_tower_batch
    from export import retrieval as r

    path = artifacts / "retrieval" / "items.faiss"
    if not path.is_file():
        return None
    index = faiss.read_index(str(path))
    try:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:  # IVF lists need a direct map to give vectors back by id
            ivf.make_direct_map()
        base = r.normalise(index.reconstruct_n(0, index.ntotal))
    except RuntimeError:
        return None
    rng = np.random.default_rng(seed)
    probe = rng.choice(len(base), size=min(1000, len(base)), replace=False)
    nearest = r.exact_topk(base, base[probe], 2)[:, 1]
    grain = float(np.median(np.linalg.norm(base[probe] - base[nearest], axis=1)))
    dim = base.shape[1]
    out = np.empty((n_items, dim), dtype=np.float32)
    for s in range(0, n_items, 262_144):
        e = min(n_items, s + 262_144)
        noise = rng.standard_normal((e - s, dim)).astype(np.float32) * (grain / math.sqrt(dim))
        out[s:e] = base[rng.integers(0, len(base), e - s)] + noise
    source = (
        f"{len(base):,} served item vectors x {n_items // len(base):,}, jittered by their nearest-neighbour distance"
    )
    tower = model_file(repository, "user_tower")
    if tower is None:
        return out, r.sample_queries(out, n_queries, seed=1), source + "; queries: noisy item vectors"
    session = ort_session(tower, 1, "cpu")
    max_hist = served_lengths(repository, "user_tower").get("hist_item_ids")
    feed = user_tower_batch(FeatureStore.load(artifacts), n_queries, _feature_count(session), max_hist)
    feed = {i.name: feed[i.name] for i in session.get_inputs()}
    queries = session.run(None, feed)[0]
    queries = queries.reshape(-1, queries.shape[-1])  # a multi-interest tower: each vector is one query
    return out, queries, source + f"; queries: user-tower vectors of {len(queries):,} stored users"


def faiss_bench(
    n_items: int,
    dim: int,
    k: int,
    kinds: Sequence[str],
    n_queries: int,
    n_single: int,
    nlist: int | None,
    use_gpu: bool,
    target: float = 0.95,
    data: tuple[np.ndarray, np.ndarray, str] | None = None,
) -> list[dict[str, Any]]:
    """Index kinds on `data` (vectors, queries, description), else on synthetic clustered vectors."""
    import faiss

    from export import retrieval as r

    if data is None:
        vectors = clustered_vectors(n_items, dim, clusters=max(100, n_items // 1000))
        queries, source = r.sample_queries(vectors, n_queries, seed=1), "synthetic clusters; queries: noisy items"
    else:
        vectors, queries, source = data
        n_items, dim = vectors.shape
    _log(f"faiss: {n_items:,} x {dim}-d ({source}), {len(queries)} queries, k={k}, {faiss.omp_get_max_threads()} thr")
    t0 = time.perf_counter()
    truth = r.exact_topk(vectors, queries, k)
    _log(f"faiss: exact ground truth in {time.perf_counter() - t0:.1f} s")
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        overrides = {"nlist": nlist} if nlist and kind.startswith("ivf") else {}
        choice = r.choose_index(n_items, dim, kind, **overrides)
        t0 = time.perf_counter()
        index, device = r.build_index(vectors, choice, use_gpu)
        build_s = time.perf_counter() - t0
        _log(f"faiss: built {kind} {choice.params} on {device} in {build_s:.1f} s")
        key, values = search_settings(kind, choice.params, k)
        reached = 0
        for value in values:
            if key:
                choice.params[key] = value
                r.set_search_params(index, choice)
            batch = r.measure(index, queries, truth, k, repeats=2)
            single = queries[:n_single]
            per_query = timed(lambda i=index, q=single: [i.search(q[j : j + 1], k) for j in range(len(q))], 0.0, 3)
            row = {
                "index": kind,
                "setting": f"{key}={value}" if key else "exact",
                "params": " ".join(f"{a}={b}" for a, b in choice.params.items()),
                "recall": batch["recall"],
                "batch_qps": batch["qps"],
                "single_qps": len(single) / float(per_query.min()),
                "build_s": build_s,
            }
            rows.append(row)
            _log(f"faiss: {kind} {row['setting']}: recall@{k} {row['recall']:.4f}, {row['single_qps']:.0f} q/s single")
            reached += row["recall"] >= target
            if reached >= 2 or row["recall"] >= 0.999:  # one point past the target shows the curve's knee
                break
        del index
    exact = next((x for x in rows if x["index"] == "flat"), None)
    for x in rows:
        x["speedup_single"] = x["single_qps"] / exact["single_qps"] if exact else math.nan
        x["speedup_batch"] = x["batch_qps"] / exact["batch_qps"] if exact else math.nan
        x.update(items=n_items, dim=dim, k=k, data=source)
    return rows


# ---------------------------------------------------------------------------------------------------------
# ONNX Runtime models


def model_file(repository: Path, name: str) -> Path | None:
    versions = [p for p in (repository / name).glob("[0-9]*") if (p / "model.onnx").is_file()]
    return max(versions, key=lambda p: int(p.name)) / "model.onnx" if versions else None


def ort_session(path: Path, threads: int, device: str) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), so, providers=providers)


def _feature_count(session: Any) -> int:
    for i in session.get_inputs():
        if i.name == "user_features":
            return int(i.shape[-1])
    return 0


def din_bench(
    repository: Path, artifacts: Path, batch_sizes: Sequence[int], seconds: float, threads: int, device: str
) -> list[dict[str, Any]]:
    from bench.inputs import FeatureStore, din_request, served_lengths

    path = model_file(repository, "din")
    if path is None:
        raise FileNotFoundError(f"no DIN model under {repository}/din (run `make models`)")
    session = ort_session(path, threads, device)
    fs = FeatureStore.load(artifacts)
    rows = []
    for b in batch_sizes:
        feed = din_request(fs, b, _feature_count(session), served_lengths(repository, "din").get("hist_item_ids"))
        feed = {i.name: feed[i.name] for i in session.get_inputs()}
        session.run(None, feed)  # first call allocates
        t = timed(lambda f=feed: session.run(None, f), seconds)
        rows.append(
            {
                "batch": b,
                "hist_len": int(feed["hist_len"][0]),
                "p50_ms": float(np.median(t) * 1e3),
                "rows_per_s": b / float(np.median(t)),
                "calls": int(t.size),
            }
        )
        _log(f"din: batch {b}: {rows[-1]['rows_per_s']:.0f} rows/s, {rows[-1]['p50_ms']:.2f} ms per call")
    return rows


def bert_bench(
    repository: Path,
    artifacts: Path,
    batch_sizes: Sequence[int],
    seconds: float,
    threads: int,
    device: str,
    n_quality: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from bench.inputs import IntentTexts
    from bench.payloads import labelled_intent_texts

    variants = {v: model_file(repository, v) for v in ("intent_bert", "intent_bert_int8")}
    variants = {v: p for v, p in variants.items() if p is not None}
    if not variants:
        raise FileNotFoundError(f"no intent model under {repository} (run `make models`)")
    texts = IntentTexts(artifacts)
    sessions = {v: ort_session(p, threads, device) for v, p in variants.items()}
    rows = []
    for v, s in sessions.items():
        for b in batch_sizes:
            feed = texts.typical(b)
            s.run(None, feed)
            t = timed(lambda f=feed, s=s: s.run(None, f), seconds)
            rows.append(
                {
                    "model": v,
                    "precision": "int8" if v.endswith("int8") else "fp32",
                    "batch": b,
                    "tokens": int(feed["input_ids"].shape[1]),
                    "p50_ms": float(np.median(t) * 1e3),
                    "texts_per_s": b / float(np.median(t)),
                    "size_mb": variants[v].stat().st_size / 2**20,
                }
            )
            _log(f"bert: {v} batch {b}: {rows[-1]['p50_ms']:.2f} ms, {rows[-1]['texts_per_s']:.0f} texts/s")
    quality = _bert_quality(sessions, texts, labelled_intent_texts(n_quality))
    return rows, quality


def _bert_quality(sessions: dict[str, Any], texts: Any, labelled: list[tuple[str, str]]) -> dict[str, Any]:
    """Top-1 agreement of fp32 and int8 on the messages; accuracy of each where labels are known."""
    sample = [t for t, _ in labelled] or texts.texts
    preds: dict[str, np.ndarray] = {}
    for v, s in sessions.items():
        out = []
        for i in range(0, len(sample), 32):
            feed = texts.encode(sample[i : i + 32])
            out.append(np.argmax(s.run(None, feed)[0], axis=1))
        preds[v] = np.concatenate(out)
    result: dict[str, Any] = {"texts": len(sample), "source": "BANKING77 test" if labelled else "load-test messages"}
    if len(preds) == 2:
        result["top1_agreement"] = float(np.mean(preds["intent_bert"] == preds["intent_bert_int8"]))
    if labelled:
        index = {name: i for i, name in enumerate(texts.labels)}
        truth = np.array([index.get(c, -1) for _, c in labelled])
        for v, p in preds.items():
            result[f"accuracy_{v}"] = float(np.mean(p == truth))
    return result


# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="din,bert,faiss")
    p.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=1.0, help="timing per DIN / BERT point")
    p.add_argument("--din-batches", default="1,16,64,200,512,1024")
    p.add_argument("--bert-batches", default="1,16")
    p.add_argument("--bert-quality-texts", type=int, default=512)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=0, help="embedding width; 0 = the manifest's (else 64)")
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--kinds", default="flat,ivf_flat,hnsw")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--single-queries", type=int, default=200)
    p.add_argument("--nlist", type=int, default=0, help="IVF lists; 0 = what export would choose")
    p.add_argument("--synthetic", action="store_true", help="clustered random vectors, not the served geometry")
    ns = p.parse_args(argv)
    parts = set(filter(None, ns.parts.split(",")))

    if "din" in parts:
        rows = din_bench(ns.repository, ns.artifacts, _ints(ns.din_batches), ns.seconds, ns.threads, ns.device)
        write_csv(rows, ns.out / "din.csv")
    if "bert" in parts:
        batches, n_quality = _ints(ns.bert_batches), ns.bert_quality_texts
        rows, quality = bert_bench(ns.repository, ns.artifacts, batches, ns.seconds, ns.threads, ns.device, n_quality)
        write_csv(rows, ns.out / "bert.csv")
        (ns.out / "bert_quality.json").write_text(json.dumps(quality, indent=1) + "\n")
    if "faiss" in parts:
        import faiss

        faiss.omp_set_num_threads(ns.threads)
        dim = ns.dim or _manifest_dim(ns.artifacts)
        kinds, gpu = ns.kinds.split(","), ns.device == "cuda"
        data = None if ns.synthetic else served_like(ns.artifacts, ns.repository, ns.items, ns.queries)
        rows = faiss_bench(ns.items, dim, ns.k, kinds, ns.queries, ns.single_queries, ns.nlist or None, gpu, data=data)
        write_csv(rows, ns.out / "faiss.csv")
    return 0


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _manifest_dim(artifacts: Path) -> int:
    path = artifacts / "manifest.json"
    if path.is_file():
        dim = json.loads(path.read_text()).get("retrieval", {}).get("embedding_dim")
        if isinstance(dim, int):
            return dim
    return 64


if __name__ == "__main__":
    raise SystemExit(main())
