"""Recommendation and forecast artifacts: FAISS index, behaviour feature tables, stored sales series.

The item tower runs over the catalogue through its exported ONNX file (the vectors the gateway's index
holds are what the deployable graph computes); recall is measured with user-tower vectors of known
users as queries. The behaviour log and sales panel are the ones the checkpoints were trained on
(checked by data fingerprint), generated again from the profile or read from the folder the checkpoint
records (`data_source`), which --data / --sales-data override.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from export import features, retrieval
from export.onnx_export import ort_session, preferred_providers
from export.run_state import ExportRun, file_key_of
from training.checkpoint import recorded_data_dir
from training.common import progress
from training.data.fingerprints import behavior_fingerprint, sales_fingerprint


def _run_onnx_batched(path: Path, arrays: Mapping[str, np.ndarray], output: str, chunk: int = 8192) -> np.ndarray:
    session = ort_session(path, preferred_providers())
    n = len(next(iter(arrays.values())))
    parts = [
        session.run([output], {k: v[s : s + chunk] for k, v in arrays.items()})[0]
        for s in progress(range(0, n, chunk), desc=f"{path.parent.name} vectors", leave=False)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _user_queries(
    users: Mapping[str, np.ndarray], category: np.ndarray, config: Mapping[str, Any], n: int
) -> dict[str, np.ndarray]:
    """User-tower inputs for up to n known users with history, from the stored histories (+1 id shift)."""
    offsets, items = users["hist_offsets"], users["hist_items"]
    lengths = np.diff(offsets)
    who = np.flatnonzero(lengths > 0)[:n]
    width = int(config["max_hist"])
    length = np.minimum(lengths[who], width)
    col = np.arange(width)
    valid = col[None, :] < length[:, None]
    pos = np.where(valid, offsets[who + 1][:, None] - length[:, None] + col[None, :], 0)
    hist = np.where(valid, items[pos].astype(np.int64) + 1, 0)
    out = {
        "hist_item_ids": hist,
        "hist_cat_ids": np.where(valid, category[np.maximum(hist - 1, 0)].astype(np.int64) + 1, 0),
        "hist_len": length.astype(np.int64),
    }
    if config.get("user_feature_cardinalities"):
        out["user_features"] = users["user_features"][who].astype(np.int64) + 1
    return out


def trained_profile(run: ExportRun, checkpoint: str, override: str | None) -> str:
    """The data profile a model was trained with: the override, else its checkpoint's or report's record, else quick."""
    if override:
        return override
    recorded = (run.payload(checkpoint).get("extra") or {}).get("profile")
    report = run.args.artifacts / "reports" / f"{checkpoint}.json"
    if not recorded and report.is_file():
        recorded = json.loads(report.read_text()).get("profile")
    return str(recorded or "quick")


def retrieval_artifacts(run: ExportRun) -> None:
    args = run.args
    tt = run.payload("two_tower")
    data = args.data or recorded_data_dir(tt, "behavior")  # the flag overrides what training recorded
    log = features.behavior_for_export(trained_profile(run, "two_tower", args.profile), args.seed, data)
    features.check_fingerprint(log, tt.get("data_fingerprint", ""), "the two-tower model")
    config = tt["config"]
    extra = tt.get("extra") or {}
    edges = np.asarray(extra["price_bucket_edges"], dtype=np.float32) if "price_bucket_edges" in extra else None
    items = features.item_table(log, edges)
    max_hist = max(int(config["max_hist"]), int(run.payloads.get("din", {}).get("config", {}).get("max_hist", 0)))
    users = features.user_store(log, max_hist)
    feat_dir = args.artifacts / "features"
    written = {
        "items": features.write_npz(feat_dir / "items.npz", items),
        "users": features.write_npz(feat_dir / "users.npz", users),
        "popularity": features.write_npz(feat_dir / "popularity.npz", features.popularity(log)),
    }
    run.files += list(written.values())

    item_inputs = {
        "item_ids": np.arange(log.catalogue.n_items, dtype=np.int64) + 1,
        "cat_ids": items["category"].astype(np.int64) + 1,
        "brand_ids": items["brand"].astype(np.int64) + 1,
        "price_bucket": items.get("price_bucket", np.zeros(log.catalogue.n_items, np.int64)),
    }
    vectors = _run_onnx_batched(Path(run.models["item_tower"]["file"]), item_inputs, "item_embedding")
    queries = None
    if "user_tower" in run.models:
        q_inputs = _user_queries(users, items["category"], config, 2000)
        towers = _run_onnx_batched(Path(run.models["user_tower"]["file"]), q_inputs, "user_embedding")
        queries = towers.reshape(-1, towers.shape[-1])  # every interest vector is a query the gateway sends
    index, section = retrieval.build_and_measure(
        vectors, args.index, k=args.recall_k, queries=queries, memory_mb=args.index_memory_mb
    )
    index_path = retrieval.save_index(index, args.artifacts / "retrieval" / "items.faiss")
    run.files.append(index_path)
    section["file_mb"] = round(index_path.stat().st_size / 2**20, 3)  # beside the estimate the budget was judged by
    section["query_source"] = "user tower over stored histories" if queries is not None else section["query_source"]
    run.sections["retrieval"] = {**section, "file": file_key_of(run, index_path), "item_model": "item_tower"}
    run.sections["features"] = {name: file_key_of(run, path) for name, path in written.items()} | {
        "n_items": int(log.catalogue.n_items),
        "n_users": int(log.n_users),
        "max_hist": max_hist,
    }
    run.sections.setdefault("data", {})["behavior"] = behavior_fingerprint(log)


def sales_artifacts(run: ExportRun) -> None:
    """features/sales.npz: what /v1/forecast needs for a stored series (the TCN's training panel)."""
    args = run.args
    tcn = run.payload("tcn")
    extra = tcn.get("extra") or {}
    profile = trained_profile(run, "tcn", args.sales_profile)
    panel = features.sales_for_export(profile, args.seed, args.sales_data or recorded_data_dir(tcn, "sales"))
    got = sales_fingerprint(panel)
    if tcn.get("data_fingerprint") and got != tcn["data_fingerprint"]:
        raise ValueError(
            f"the TCN was trained on sales data with fingerprint {tcn['data_fingerprint']}, but the panel here "
            f"(profile {profile!r}) has {got}; pass --sales-data or --sales-profile"
        )
    config = tcn["config"]
    store = features.sales_store(panel, int(config["context_days"]), int(config["horizon"]))
    path = features.write_npz(args.artifacts / "features" / "sales.npz", store)
    run.files.append(path)
    run.sections["forecast"] = {
        "file": file_key_of(run, path),
        "n_series": int(panel.n_series),
        "origin_date": str(store["origin_date"]),
        "context_days": int(config["context_days"]),
        "horizon": int(config["horizon"]),
        "feature_spec": extra.get("feature_spec"),
        "quantiles": list(config["quantiles"]),
        # The advice's calibrated period totals (training/forecast/calibration.py); None from older checkpoints.
        "totals_calibration": extra.get("totals_calibration"),
    }
    run.sections.setdefault("data", {})["sales"] = got
