"""A tiny price-sensitive TCN stand-in (the real TCN's tensors) and a tiny sales store, for /v1/price tests.

The stand-in's demand is log-log in price with a known elasticity per category, so the best price is known
in closed form: per day, mean = series_scale * mean(units_scaled over the window) * exp(e[category] *
log_price_ratio), and the quantiles are mean * (0.6, 1, 1.4). Built with onnx.helper (no torch). The plans
stand-in (tcn_plans's tensors) computes the same per plan, from one past and K plans of the horizon.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from serving.contracts.model_specs import TCN, TCN_PLANS
from serving.forecast.features import FeatureSpec
from serving.runtime.manifest import write_manifest
from tests.serving import gateway_helpers as g

H = 28
SPEC = FeatureSpec(context_days=35, horizon=H, scale_days=14, event_names=("payday",), n_stores=2, n_categories=2)
ELASTICITY = (0.0, -2.0, -0.5)  # per category id (index + 1): unknown, category 0 (elastic), category 1
SPREAD = (0.6, 1.0, 1.4)
LEVELS = (0.1, 0.5, 0.9)
DAYS = 40  # stored days (more than context_days: the builder keeps the last 35)
FIRST = dt.date(2024, 3, 1)
ORIGIN = FIRST + dt.timedelta(days=DAYS - 1)
# Series: (store, item, category); their current (regular) prices and constant daily units.
SERIES = (("s1", "A", 1), ("s1", "B", 0), ("s2", "A", 1))
CURRENT = (10.0, 8.0, 4.0)
UNITS = (5.0, 3.0, 2.0)

F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def price_tcn_graph() -> helper.GraphProto:
    c = g._const
    nodes = [
        helper.make_node("Gather", ["past_features", "zero"], ["units"], axis=1),  # [B, L]
        helper.make_node("ReduceMean", ["units", "axis1"], ["level"], keepdims=1),  # [B, 1]
        helper.make_node("Gather", ["future_features", "zero"], ["ratio"], axis=1),  # [B, H]
        helper.make_node("Gather", ["E", "category_ids"], ["e"], axis=0),  # [B]
        helper.make_node("Unsqueeze", ["e", "axis1"], ["e2"]),
        helper.make_node("Mul", ["e2", "ratio"], ["shift"]),
        helper.make_node("Exp", ["shift"], ["factor"]),
        helper.make_node("Unsqueeze", ["series_scale", "axis1"], ["scale2"]),
        helper.make_node("Mul", ["level", "scale2"], ["base"]),
        helper.make_node("Mul", ["base", "factor"], ["mean"]),  # [B, H]
        helper.make_node("Unsqueeze", ["mean", "axis2"], ["mean3"]),
        helper.make_node("Mul", ["mean3", "spread"], ["quantiles"]),  # [B, H, 3]
    ]
    inits = [
        c("zero", np.array(0, np.int64)),
        c("axis1", np.array([1], np.int64)),
        c("axis2", np.array([2], np.int64)),
        c("E", np.array(ELASTICITY, np.float32)),
        c("spread", np.array(SPREAD, np.float32)),
    ]
    ins = [
        helper.make_tensor_value_info("past_features", F32, ["batch", SPEC.n_past, SPEC.context_days]),
        helper.make_tensor_value_info("future_features", F32, ["batch", SPEC.n_future, H]),
        helper.make_tensor_value_info("series_scale", F32, ["batch"]),
        helper.make_tensor_value_info("store_ids", I64, ["batch"]),
        helper.make_tensor_value_info("category_ids", I64, ["batch"]),
    ]
    outs = [
        helper.make_tensor_value_info("quantiles", F32, ["batch", H, 3]),
        helper.make_tensor_value_info("mean", F32, ["batch", H]),
    ]
    return helper.make_graph(nodes, "tcn", ins, outs, inits)  # store_ids is an input it ignores


def price_tcn_plans_graph() -> helper.GraphProto:
    """price_tcn_graph per plan: past_features [B, n_past, L] once, future_plans [B, K, n_future, H] ->
    quantiles [B, K, H, 3], mean [B, K, H], each plan's values those of price_tcn_graph with it as the future."""
    c = g._const
    nodes = [
        helper.make_node("Gather", ["past_features", "zero"], ["units"], axis=1),  # [B, L]
        helper.make_node("ReduceMean", ["units", "axis1"], ["level"], keepdims=1),  # [B, 1]
        helper.make_node("Gather", ["future_plans", "zero"], ["ratio"], axis=2),  # [B, K, H]
        helper.make_node("Gather", ["E", "category_ids"], ["e"], axis=0),  # [B]
        helper.make_node("Unsqueeze", ["e", "axes12"], ["e3"]),  # [B, 1, 1]
        helper.make_node("Mul", ["e3", "ratio"], ["shift"]),
        helper.make_node("Exp", ["shift"], ["factor"]),  # [B, K, H]
        helper.make_node("Unsqueeze", ["series_scale", "axis1"], ["scale2"]),
        helper.make_node("Mul", ["level", "scale2"], ["base"]),  # [B, 1]
        helper.make_node("Unsqueeze", ["base", "axis2"], ["base3"]),  # [B, 1, 1]
        helper.make_node("Mul", ["base3", "factor"], ["mean"]),  # [B, K, H]
        helper.make_node("Unsqueeze", ["mean", "axis3"], ["mean4"]),
        helper.make_node("Mul", ["mean4", "spread"], ["quantiles"]),  # [B, K, H, 3]
    ]
    inits = [
        c("zero", np.array(0, np.int64)),
        c("axis1", np.array([1], np.int64)),
        c("axis2", np.array([2], np.int64)),
        c("axis3", np.array([3], np.int64)),
        c("axes12", np.array([1, 2], np.int64)),
        c("E", np.array(ELASTICITY, np.float32)),
        c("spread", np.array(SPREAD, np.float32)),
    ]
    ins = [
        helper.make_tensor_value_info("past_features", F32, ["batch", SPEC.n_past, SPEC.context_days]),
        helper.make_tensor_value_info("future_plans", F32, ["batch", "plans", SPEC.n_future, H]),
        helper.make_tensor_value_info("series_scale", F32, ["batch"]),
        helper.make_tensor_value_info("store_ids", I64, ["batch"]),
        helper.make_tensor_value_info("category_ids", I64, ["batch"]),
    ]
    outs = [
        helper.make_tensor_value_info("quantiles", F32, ["batch", "plans", H, 3]),
        helper.make_tensor_value_info("mean", F32, ["batch", "plans", H]),
    ]
    return helper.make_graph(nodes, "tcn_plans", ins, outs, inits)


def tcn_config() -> dict[str, object]:
    return {
        "n_past": SPEC.n_past,
        "n_future": SPEC.n_future,
        "context_days": SPEC.context_days,
        "horizon": H,
        "n_stores": SPEC.n_stores,
        "n_categories": SPEC.n_categories,
        "quantiles": list(LEVELS),
    }


def add_price_tcn(repo: Path, version: int = 1, max_batch_size: int = 128) -> None:
    g.write_tiny_config(repo, TCN, tcn_config(), max_batch_size=max_batch_size)
    g._save(price_tcn_graph(), repo / "tcn" / str(version) / "model.onnx")


def add_price_tcn_plans(repo: Path, version: int = 1, max_batch_size: int = 16) -> None:
    g.write_tiny_config(repo, TCN_PLANS, tcn_config(), max_batch_size=max_batch_size)
    g._save(price_tcn_plans_graph(), repo / TCN_PLANS.name / str(version) / "model.onnx")


def sales_arrays() -> dict[str, np.ndarray]:
    """Constant units per series; past prices vary +-10 % around the current price, with one promotion week."""
    n, total = len(SERIES), DAYS + H
    price = np.repeat(np.array(CURRENT)[:, None], total, axis=1)
    wiggle = 1.0 + 0.1 * np.sin(np.arange(DAYS) / 3.0)
    price[:, :DAYS] *= wiggle  # seen range: current x (0.9 .. 1.1)
    price[:, DAYS - 10 : DAYS] = np.array(CURRENT)[:, None]  # the last 10 days at the current price
    promo = np.zeros((n, total))
    promo[:, DAYS - 3 : DAYS] = 1.0  # the last three days on promotion at 70 % of the price
    price[:, DAYS - 3 : DAYS] *= 0.7
    events = np.zeros((total, 1), np.int8)
    events[::15, 0] = 1
    stores = sorted({s for s, _, _ in SERIES})
    items = sorted({i for _, i, _ in SERIES})
    return {
        "store_ids": np.array(stores),
        "item_ids": np.array(items),
        "series_store": np.array([stores.index(s) for s, _, _ in SERIES]),
        "series_item": np.array([items.index(i) for _, i, _ in SERIES]),
        "series_category": np.array([c for _, _, c in SERIES]),
        "units": np.repeat(np.array(UNITS)[:, None], DAYS, axis=1).astype(np.float32),
        "price": np.round(price, 2).astype(np.float32),
        "promo": promo.astype(np.float32),
        "events": events,
        "event_names": np.array(SPEC.event_names),
        "first_date": np.asarray(str(FIRST)),
        "origin_date": np.asarray(str(ORIGIN)),
    }


def build(root: Path, max_batch_size: int = 128, plans: bool = True) -> Path:
    """root/model_repository (the tiny models, the price-sensitive TCN and, with `plans`, its plans model, as
    export writes them) and root/artifacts with a sales store."""
    repo = g.build_repository(root / "model_repository")
    add_price_tcn(repo, max_batch_size=max_batch_size)
    if plans:
        add_price_tcn_plans(repo)
    art = g.build_artifacts(root / "artifacts", repo, manifest=False)
    sales = art / "features" / "sales.npz"
    np.savez(sales, **sales_arrays())
    files = [p for p in art.rglob("*") if p.is_file() and p.name != "manifest.json"]
    onnx_files = sorted(repo.glob("*/*/model.onnx"))
    sections = {
        "retrieval": {"file": "artifacts/retrieval/items.faiss", "item_count": g.N_ITEMS, "embedding_dim": g.DIM},
        "models": {p.parent.parent.name: {"version": int(p.parent.name)} for p in onnx_files},
        "forecast": {
            "file": "artifacts/features/sales.npz",
            "feature_spec": SPEC.to_dict(),
            "quantiles": list(LEVELS),
            "context_days": SPEC.context_days,
            "horizon": H,
        },
    }
    write_manifest(
        art / "manifest.json", files + onnx_files, sections, {"artifacts": ".", "model_repository": str(repo)}
    )
    return root


def settings_kw(root: Path) -> dict[str, object]:
    return {"model_repository": root / "model_repository", "artifacts": root / "artifacts", "execution_provider": "cpu"}


def optimum(unit_cost: float, elasticity: float) -> float:
    """The profit-maximising price of a constant-elasticity demand (elasticity < -1)."""
    return unit_cost * elasticity / (1.0 + elasticity)
