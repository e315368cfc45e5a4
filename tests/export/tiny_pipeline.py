"""A tiny `python -m export` run (random-weight checkpoints on the tiny generated data), shared by the
export tests and the end-to-end gateway tests."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from export.models import EXPORTERS
from export.pipeline import ExportArgs, run_export
from serving.forecast.calibration import TotalsCalibration
from serving.forecast.features import FeatureSpec
from training.checkpoint import config_from_dict, save_checkpoint
from training.data import behavior, sales
from training.data.fingerprints import behavior_fingerprint, sales_fingerprint
from training.data.schema import SalesPanel
from training.models.two_tower import TwoTowerConfig, price_bucket_edges


def save_tiny(directory, name: str, spec_name: str, config: dict, fingerprint: str = "", extra: dict | None = None):
    """A checkpoint as training writes it: the full config (defaults filled in) and random weights."""
    exporter = EXPORTERS[spec_name]
    full = asdict(config_from_dict(exporter.config_cls, config))
    module = exporter.build(full)
    save_checkpoint(
        directory / f"{name}.pt",
        model_name=name,
        config=full,
        state_dict=module.model.state_dict(),
        data_fingerprint=fingerprint,
        extra=extra or {},
    )


def tiny_tcn(panel: SalesPanel) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tiny TCN config whose inputs fit the panel's feature layout, and the checkpoint extra naming it."""
    spec = FeatureSpec(
        context_days=16,
        horizon=5,
        event_names=tuple(panel.event_names),
        n_stores=int(panel.store.max()) + 1,
        n_categories=int(panel.category.max()) + 1,
    )
    config = {
        **EXPORTERS["tcn"].tiny_config,
        "n_past": spec.n_past,
        "n_future": spec.n_future,
        "n_stores": spec.n_stores,
        "n_categories": spec.n_categories,
        "horizon": spec.horizon,
        "context_days": spec.context_days,
    }
    # As training writes it: the period-total calibration (here scores that widen the summed P10-P90 by half).
    scores = [[-1.5, -0.6, 0.0, 0.6, 1.5, 2.0]] * spec.horizon
    calibration = TotalsCalibration(
        (0.1, 0.3, 0.5, 0.7, 0.9, 0.95), tuple(range(1, spec.horizon + 1)), scores, (0.1, 0.5, 0.9)
    )
    return config, {"feature_spec": spec.to_dict(), "totals_calibration": calibration.to_dict()}


def export_tiny(root: Path) -> tuple[ExportArgs, dict[str, Any]]:
    """Tiny two-tower, DIN and TCN checkpoints exported into root/model_repository and root/artifacts."""
    ckpts = root / "checkpoints"
    log, _ = behavior.generate(behavior.PROFILES["tiny"], seed=0)
    fp = behavior_fingerprint(log)
    cat = log.catalogue
    two_tower = asdict(
        TwoTowerConfig(
            n_items=cat.n_items,
            n_categories=cat.n_categories,
            n_brands=cat.n_brands,
            user_feature_cardinalities=tuple(log.user_feature_cardinalities),
            n_price_buckets=4,
            max_hist=10,
            emb_dim=4,
            dim=8,
            hidden=(16,),
        )
    )
    torch.manual_seed(0)
    save_tiny(ckpts, "two_tower", "user_tower", two_tower, fp, {"price_bucket_edges": price_bucket_edges(cat.price, 4)})
    din = {**EXPORTERS["din"].tiny_config, "n_items": cat.n_items, "n_categories": cat.n_categories}
    din["user_feature_cardinalities"] = list(log.user_feature_cardinalities)
    save_tiny(ckpts, "din", "din", din, fp)
    panel = sales.generate(sales.PROFILES["tiny"], seed=0)
    tcn, extra = tiny_tcn(panel)
    save_tiny(ckpts, "tcn", "tcn", tcn, sales_fingerprint(panel), extra=extra)
    args = ExportArgs(
        checkpoints=ckpts,
        repo=root / "model_repository",
        artifacts=root / "artifacts",
        exporter="torchscript",  # the dynamo path is proven in test_onnx_export; this test is about the plumbing
        profile="tiny",
        sales_profile="tiny",
        latency=False,
        int8=False,
        recall_k=20,
    )
    return args, run_export(args)
