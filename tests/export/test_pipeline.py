"""`python -m export` end to end on tiny checkpoints: repository, artifacts, manifest, report, versions."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from export.models import EXPORTERS
from export.pbtxt import check_config
from export.pipeline import run_export
from serving.contracts.triton_config import parse_config
from serving.forecast.calibration import TotalsCalibration
from serving.runtime.manifest import ManifestError, verify_manifest
from tests.export.tiny_pipeline import export_tiny, save_tiny
from training.data import behavior, sales


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("export"))


def test_every_model_with_a_checkpoint_is_exported(exported):
    args, report = exported
    assert set(report["models"]) == {"user_tower", "item_tower", "din", "tcn", "tcn_plans"}
    assert "tcn" in report["table"]
    assert [r["model"] for r in report["skipped"]] == ["intent_bert"]
    for name in ("user_tower", "din", "tcn", "tcn_plans"):
        cfg_path = args.repo / name / "config.pbtxt"
        check_config(parse_config(cfg_path), args.repo / name / "1" / "model.onnx")
    assert (args.artifacts / "models" / "item_tower" / "model.onnx").is_file()
    assert not (args.repo / "item_tower").exists()  # offline model: not served by Triton


def test_the_forecast_section_carries_the_checkpoints_totals_calibration(exported):
    args, _ = exported  # before the versions test below re-saves the TCN checkpoint without one
    section = verify_manifest(args.artifacts / "manifest.json")["forecast"]
    ck = torch.load(args.checkpoints / "tcn.pt", weights_only=True)
    assert section["totals_calibration"] == ck["extra"]["totals_calibration"]
    cal = TotalsCalibration.from_dict(section["totals_calibration"])
    assert cal.horizon == section["horizon"] and list(cal.base_levels) == section["quantiles"]


def test_manifest_verifies_and_describes_retrieval(exported):
    args, _ = exported
    body = verify_manifest(args.artifacts / "manifest.json", expect={"retrieval.embedding_dim": 8})
    retrieval = body["retrieval"]
    assert retrieval["item_count"] == behavior.PROFILES["tiny"].n_items and retrieval["index_type"] == "flat"
    assert retrieval["query_source"] == "user tower over stored histories" and retrieval["recall_at_20"] == 1.0
    assert retrieval["memory_budget_mb"] == 2048 and 0 < retrieval["memory_estimate_mb"] <= retrieval["file_mb"] * 1.05
    assert body["models"]["din"]["file"] == "model_repository/din/1/model.onnx"
    assert body["models"]["din"]["data_fingerprint"] == body["data"]["behavior"]
    assert body["models"]["tcn"]["data_fingerprint"] == body["data"]["sales"]
    assert "model_repository/tcn/config.pbtxt" in body["files"]


def test_index_memory_budget_option():
    from export.__main__ import parse_args

    assert parse_args([]).index_memory_mb == 2048
    assert parse_args(["--index-memory-mb", "512"]).index_memory_mb == 512


def test_report_has_sizes_and_parity(exported):
    args, _ = exported
    report = json.loads((args.artifacts / "reports" / "export.json").read_text())
    din = report["models"]["din"]
    assert din["size_mb"] > 0 and din["parity"]["max_abs_err"] <= din["parity"]["atol"]
    assert din["parity"]["batches"] == [1, 3, 64] and len(din["parity"]["lengths"]) >= 2
    assert "| din |" in report["table"]


def test_feature_tables_match_the_log(exported):
    args, _ = exported
    log, _ = behavior.generate(behavior.PROFILES["tiny"], seed=0)
    items = np.load(args.artifacts / "features" / "items.npz")
    users = np.load(args.artifacts / "features" / "users.npz")
    assert (items["item_ids"] == log.catalogue.item_ids).all() and (items["category"] == log.catalogue.category).all()
    offsets, hist = users["hist_offsets"], users["hist_items"]
    width = int(users["max_hist"])
    assert width == 12  # the longer of the two models' histories (two-tower 10, DIN 12)
    assert offsets.shape == (log.n_users + 1,) and np.diff(offsets).max() == width
    # each user's stored history = their last `width` positive events, oldest first
    for u in (0, 7):
        pos = (log.user == u) & (log.event >= 1)
        assert (hist[offsets[u] : offsets[u + 1]] == log.item[pos][-width:]).all()
    pop = np.load(args.artifacts / "features" / "popularity.npz")
    assert len(np.unique(pop["items"])) == len(pop["items"]) and (np.diff(pop["recent_counts"]) <= 0).all()
    # the per-item score in items.npz orders items exactly as the popularity list does
    top = np.argsort(-items["popularity"], kind="stable")[: len(pop["items"])]
    assert (top == pop["items"]).all()
    # What the gateway needs to code an item added online the way export coded the catalogue.
    assert (items["category_vocab"] == np.arange(log.catalogue.n_categories)).all()
    assert items["brand_vocab"].shape == (log.catalogue.n_brands,) and items["price_bucket_edges"].shape == (3,)
    assert (np.searchsorted(items["price_bucket_edges"], items["price"], side="right") == items["price_bucket"]).all()


def test_versions_are_reused_then_bumped_and_tampering_is_caught(exported, tmp_path):
    args, _ = exported
    again = run_export(replace(args, models=("tcn",)))
    assert again["models"]["tcn"]["version"] == 1  # same checkpoint: same version, overwritten
    cfg = {**EXPORTERS["tcn"].tiny_config, "channels": 6}
    save_tiny(args.checkpoints, "tcn", "tcn", cfg)
    bumped = run_export(replace(args, models=("tcn",)))
    assert bumped["models"]["tcn"]["version"] == 2
    # The plans variant follows its model: exported again with it, from the same (new) checkpoint.
    assert bumped["models"]["tcn_plans"]["version"] == 2
    assert bumped["models"]["tcn_plans"]["checkpoint_sha256"] == bumped["models"]["tcn"]["checkpoint_sha256"]
    assert (args.repo / "tcn" / "1").is_dir() and (args.repo / "tcn" / "2" / "model.onnx").is_file()
    body = verify_manifest(args.artifacts / "manifest.json")  # the models not re-exported are carried over
    assert body["models"]["tcn"]["version"] == 2 and {"din", "user_tower", "item_tower"} <= set(body["models"])
    assert "retrieval" in body and "model_repository/tcn/1/model.onnx" not in body["files"]
    model = args.repo / "tcn" / "2" / "model.onnx"
    original = model.read_bytes()
    data = bytearray(original)
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    try:
        with pytest.raises(ManifestError, match=r"model_repository/tcn/2/model\.onnx: sha256"):
            verify_manifest(args.artifacts / "manifest.json")
    finally:
        model.write_bytes(original)  # the module's other tests share this export


def test_sales_store_for_the_forecast_endpoint(exported):
    args, _ = exported
    body = verify_manifest(args.artifacts / "manifest.json")
    assert body["forecast"]["file"] == "artifacts/features/sales.npz" and body["forecast"]["horizon"] == 5
    f = np.load(args.artifacts / "features" / "sales.npz")
    panel = sales.generate(sales.PROFILES["tiny"], seed=0)
    context, horizon = 16, 5
    assert f["units"].shape == (panel.n_series, context) and f["price"].shape == (panel.n_series, context + horizon)
    np.testing.assert_array_equal(f["units"], panel.units[:, -context:])
    np.testing.assert_array_equal(f["price"][:, context:], np.repeat(panel.price[:, -1:], horizon, axis=1))
    assert (f["promo"][:, context:] == 0).all()
    future, _ = sales.calendar_events(panel.start_date + np.timedelta64(panel.n_days, "D"), horizon)
    np.testing.assert_array_equal(f["events"][context:], future)
    assert str(f["origin_date"]) == str(panel.dates[-1]) and (f["series_item"] == panel.item).all()
