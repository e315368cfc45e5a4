"""Export specs: the one description of each served model's tensors (DESIGN.md "Contracts").

Data, not code paths: export (ONNX names, dynamic axes, parity), config.pbtxt writing, tests, Triton
warm-up and the gateway's input building all read these. numpy only, so serving can import it.

Dims: -1 = dynamic. The batch dimension is NOT listed in `dims` (Triton's convention with
max_batch_size > 0); every tensor here is batched along a leading axis. `dims == ()` is a tensor of
shape [batch] (one value per row): Triton declares it as dims [1] with reshape [] (contracts/triton_config.py).
Sizes that depend on a trained model (history length, number of labels...) are read from the
checkpoint's config by `ModelSpec.resolve(config)`, which fills named dims such as "dim"; a named dim
that is not a config key is computed by the spec's `dim_rules`.

Ids: every id input is a model index already shifted by +1 (0 = padding / unknown), the models'
convention (training/data/schema.py ID_OFFSET). Id maps from the shop's ids are in artifacts/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

# numpy dtype name -> Triton config dtype / ONNX element type name.
TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "bool": "TYPE_BOOL",
    "object": "TYPE_STRING",
}

BATCH_AXIS = "batch"  # symbolic name of the leading axis in every exported graph


@dataclass(frozen=True)
class TensorSpec:
    name: str  # chosen, never generated: "hist_item_ids", not "input.1"
    dtype: str  # numpy dtype name, a key of TRITON_DTYPES
    dims: tuple[int | str, ...]  # without the batch dim; -1 dynamic; str = filled from the model config
    doc: str = ""
    # Names of the dynamic (-1) dims, in order, so tensors that share an axis share its symbol in the ONNX
    # graph (hist_item_ids and hist_cat_ids have the same history length). Unnamed ones get "<name>_<i>".
    axis_names: tuple[str, ...] = ()
    # True: left out of the resolved spec when a dim resolves to 0 (a model trained without that feature).
    optional: bool = False

    def resolved(self, config: Mapping[str, object], rules: Mapping[str, Callable[[Mapping], int]]) -> TensorSpec:
        dims = tuple(_resolve_dim(d, config, rules) for d in self.dims)
        return replace(self, dims=dims)

    @property
    def triton_dtype(self) -> str:
        return TRITON_DTYPES[self.dtype]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """Axis index (batch = 0) -> symbolic name, for every dynamic axis of the batched tensor."""
        axes = {0: BATCH_AXIS}
        names = iter(self.axis_names)
        for i, d in enumerate(self.dims, start=1):
            if d == -1:
                axes[i] = next(names, f"{self.name}_{i}")
        return axes

    def batched_shape(self, batch: int, length: int | None = None) -> tuple[int, ...]:
        """Concrete shape with the batch axis; dynamic dims take `length` (the spec's sequence length)."""
        if any(isinstance(d, str) for d in self.dims):
            raise ValueError(f"{self.name}: resolve the spec before asking for shapes (dims {self.dims})")
        if length is None and -1 in self.dims:
            raise ValueError(f"{self.name}: a dynamic dim needs a length")
        return (batch, *(length if d == -1 else d for d in self.dims))  # type: ignore[misc]


def _resolve_dim(d: int | str, config: Mapping[str, object], rules: Mapping[str, Callable[[Mapping], int]]) -> int:
    if not isinstance(d, str):
        return d
    if d in rules:
        return int(rules[d](config))
    if d not in config:
        raise KeyError(f"dim {d!r} is neither a key of the model config nor a spec dim rule")
    return int(config[d])  # type: ignore[call-overload]


# Triton's dynamic batcher: when a model instance frees up it takes everything queued (up to max_batch_size), so
# under load batches fill without a wait; a queue delay holds a request back while the model is idle, and with
# preferred sizes it waits the whole delay for company that does not come (Triton's batcher guide: start from no
# delay and no preferred sizes, add them where measurement shows a gain). `python -m bench.triton_queue`
# (bench/results/triton_queue-2cpu-amd-epyc-2026-12-04.md, the mix through the gateway over the local Triton):
# 100 us answers 205 req/s at one user against 101 with the earlier 1-5 ms delays and preferred sizes (p50 4.0 vs
# 8.7 ms), and the same within the rounds' spread at 4 and 8 users (245 vs 231, 239 vs 245).
QUEUE_DELAY_US = 100

ExampleMaker = Callable[..., dict[str, np.ndarray]]
"""make_example(config, batch, rng, length=None) -> {input name: array}. Values are valid model inputs
(ids in range, lengths consistent with padding). `length` is the size of the spec's dynamic sequence axis
(history or tokens); None lets the maker pick one up to the model's maximum."""


@dataclass(frozen=True)
class ModelSpec:
    """One served model. `make_example(config, batch, rng, length=None)` returns valid inputs (parity, warm-up)."""

    name: str  # Triton model name and model_repository/ folder
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    make_example: ExampleMaker
    max_batch_size: int = 256
    max_queue_delay_us: int = QUEUE_DELAY_US
    preferred_batch_sizes: tuple[int, ...] = ()
    atol: float = 1e-4  # parity tolerance ONNX Runtime vs PyTorch
    rtol: float = 1e-3
    checkpoint: str = ""  # artifacts/checkpoints/<checkpoint>.pt this model is exported from
    served_online: bool = True  # False: run offline by export only (the item tower)
    extra: dict[str, object] = field(default_factory=dict)
    # The one dynamic non-batch axis (history or tokens), if any: its name, the config key of its maximum,
    # and the lengths parity is checked at (named ones are config keys, e.g. the maximum itself).
    seq_axis: str | None = None
    seq_max: str | int | None = None
    parity_lengths: tuple[int | str, ...] = ()
    dim_rules: dict[str, Callable[[Mapping], int]] = field(default_factory=dict)
    doc: str = ""

    def resolve(self, config: Mapping[str, object]) -> ModelSpec:
        inputs = tuple(t.resolved(config, self.dim_rules) for t in self.inputs)
        inputs = tuple(t for t in inputs if not (t.optional and 0 in t.dims))
        return replace(
            self,
            inputs=inputs,
            outputs=tuple(t.resolved(config, self.dim_rules) for t in self.outputs),
            seq_max=self.max_length(config),
            parity_lengths=self.lengths_for_parity(config),
        )

    def max_length(self, config: Mapping[str, object]) -> int | None:
        if self.seq_max is None:
            return None
        return _resolve_dim(self.seq_max, config, self.dim_rules)

    def lengths_for_parity(self, config: Mapping[str, object]) -> tuple[int, ...]:
        limit = self.max_length(config)
        lengths = {_resolve_dim(n, config, self.dim_rules) for n in self.parity_lengths}
        return tuple(sorted(n for n in lengths if limit is None or n <= limit))

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def example_inputs(
        self, config: Mapping[str, object], batch: int, rng: np.random.Generator, length: int | None = None
    ) -> dict[str, np.ndarray]:
        """`make_example` checked against the resolved spec: names, dtypes and shapes (one place to catch drift)."""
        resolved = self.resolve(config)
        arrays = self.make_example(config, batch, rng, length=length)
        if list(arrays) != resolved.input_names:
            raise ValueError(f"{self.name}: example inputs {list(arrays)} != spec inputs {resolved.input_names}")
        for t in resolved.inputs:
            a = arrays[t.name]
            want_len = a.shape[1] if -1 in t.dims and a.ndim > 1 else None
            if a.dtype != np.dtype(t.dtype) or a.shape != t.batched_shape(batch, want_len):
                raise ValueError(f"{self.name}.{t.name}: example {a.dtype}{list(a.shape)} != spec {t.dtype}{t.dims}")
        return arrays


# The registry: filled by the per-model specs below (one per model) as the models land.
SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in SPECS:
        raise ValueError(f"spec {spec.name!r} registered twice")
    SPECS[spec.name] = spec
    return spec


def served_specs() -> list[ModelSpec]:
    """The specs Triton / the gateway serve (model_repository/ has a folder for each)."""
    return [s for s in SPECS.values() if s.served_online]


# ---------------------------------------------------------------------------------------------------------
# Example-input helpers (vectorised; ids are model indices, 0 = padding).


def _pick_length(config: Mapping[str, object], key: str, length: int | None, rng: np.random.Generator) -> int:
    limit = int(config[key])  # type: ignore[call-overload]
    return int(rng.integers(1, limit + 1)) if length is None else int(length)


def _padded_ids(rng: np.random.Generator, n_ids: int, lengths: np.ndarray, width: int) -> np.ndarray:
    """[B, width] ids in 1..n_ids at positions < lengths[b], 0 beyond (left-aligned, right-padded)."""
    ids = rng.integers(1, n_ids + 1, size=(lengths.shape[0], width), dtype=np.int64)
    return np.where(np.arange(width)[None, :] < lengths[:, None], ids, 0)


def _history(
    config: Mapping[str, object], batch: int, rng: np.random.Generator, length: int | None
) -> dict[str, np.ndarray]:
    width = _pick_length(config, "max_hist", length, rng)
    hist_len = rng.integers(0, width + 1, size=batch, dtype=np.int64)  # 0 = a user with no history yet
    hist_len[0] = width  # one full row per batch, so the longest history is always exercised
    return {
        "hist_item_ids": _padded_ids(rng, int(config["n_items"]), hist_len, width),  # type: ignore[call-overload]
        "hist_cat_ids": _padded_ids(rng, int(config["n_categories"]), hist_len, width),  # type: ignore[call-overload]
        "hist_len": hist_len,
    }


def _history_inputs() -> tuple[TensorSpec, ...]:
    return (
        TensorSpec("hist_item_ids", "int64", (-1,), "recent positive items, oldest first, 0-padded", ("hist",)),
        TensorSpec("hist_cat_ids", "int64", (-1,), "their categories, same layout", ("hist",)),
        TensorSpec("hist_len", "int64", (), "real history length per row; positions >= it are ignored"),
    )


def _n_user_features(config: Mapping[str, object]) -> int:
    return len(config.get("user_feature_cardinalities") or ())  # type: ignore[arg-type]


def _add_user_features(out: dict[str, np.ndarray], config: Mapping[str, object], rng: np.random.Generator) -> None:
    """Value v of a feature with c values is fed as v + 1 (0 = unknown), so 0..c; absent when F = 0."""
    cards = np.asarray(config.get("user_feature_cardinalities") or (), dtype=np.int64)
    if cards.size:
        batch = next(iter(out.values())).shape[0]
        out["user_features"] = np.floor(rng.random((batch, cards.size)) * (cards + 1)).astype(np.int64)


USER_FEATURES = TensorSpec(
    "user_features", "int64", ("n_user_features",), "categorical user attributes, value + 1", optional=True
)


# ---------------------------------------------------------------------------------------------------------
# Two-tower retrieval (training/models/two_tower.py).


def _n_interests(config: Mapping[str, object]) -> int:
    """User vectors per user (training/models/two_tower.py TwoTowerConfig.n_interests)."""
    return int(config.get("attn_heads", 0)) if config.get("multi_interest") else 1  # type: ignore[call-overload]


def _user_tower_example(
    config: Mapping[str, object], batch: int, rng: np.random.Generator, length: int | None = None
) -> dict[str, np.ndarray]:
    out = _history(config, batch, rng, length)
    _add_user_features(out, config, rng)
    return out


USER_TOWER = register(
    ModelSpec(
        name="user_tower",
        doc="user history (+ categorical user features) -> L2-normalised user vector for FAISS inner product",
        inputs=(*_history_inputs(), USER_FEATURES),
        outputs=(
            TensorSpec(
                "user_embedding",
                "float32",
                ("n_interests", "dim"),
                "L2-normalised user vectors (one per interest; 1 for a single-vector tower): an item scores the best",
            ),
        ),
        make_example=_user_tower_example,
        max_batch_size=256,
        atol=1e-5,  # unit vectors: absolute error is relative error
        checkpoint="two_tower",
        seq_axis="hist",
        seq_max="max_hist",
        parity_lengths=(1, 7, "max_hist"),
        dim_rules={"n_user_features": _n_user_features, "n_interests": _n_interests},
    )
)


def _item_tower_example(
    config: Mapping[str, object], batch: int, rng: np.random.Generator, length: int | None = None
) -> dict[str, np.ndarray]:
    def ids(n: object) -> np.ndarray:
        return rng.integers(1, int(n) + 1, size=batch, dtype=np.int64)  # type: ignore[call-overload]

    return {
        "item_ids": ids(config["n_items"]),
        "cat_ids": ids(config["n_categories"]),
        "brand_ids": ids(config["n_brands"]),
        "price_bucket": rng.integers(0, int(config["n_price_buckets"]), size=batch, dtype=np.int64),  # type: ignore[call-overload]
    }


ITEM_TOWER = register(
    ModelSpec(
        name="item_tower",
        doc="item features -> L2-normalised item vector; run offline over the catalogue into the FAISS index",
        inputs=(
            TensorSpec("item_ids", "int64", (), "item index + 1"),
            TensorSpec("cat_ids", "int64", (), "category index + 1"),
            TensorSpec("brand_ids", "int64", (), "brand index + 1"),
            TensorSpec("price_bucket", "int64", (), "0..n_price_buckets-1 from the checkpoint's price edges"),
        ),
        outputs=(TensorSpec("item_embedding", "float32", ("dim",), "L2-normalised item vector"),),
        make_example=_item_tower_example,
        max_batch_size=8192,
        atol=1e-5,
        checkpoint="two_tower",
        served_online=False,
    )
)


# ---------------------------------------------------------------------------------------------------------
# DIN ranking (training/models/din.py). One row = (a user's history, one candidate).


def _din_example(
    config: Mapping[str, object], batch: int, rng: np.random.Generator, length: int | None = None
) -> dict[str, np.ndarray]:
    out = _history(config, batch, rng, length)
    out["cand_item_ids"] = rng.integers(1, int(config["n_items"]) + 1, size=batch, dtype=np.int64)  # type: ignore[call-overload]
    out["cand_cat_ids"] = rng.integers(1, int(config["n_categories"]) + 1, size=batch, dtype=np.int64)  # type: ignore[call-overload]
    _add_user_features(out, config, rng)
    return out


DIN = register(
    ModelSpec(
        name="din",
        doc="(history, candidate) rows -> click logit and probability; a request sends one row per candidate",
        inputs=(
            *_history_inputs(),
            TensorSpec("cand_item_ids", "int64", (), "candidate item index + 1"),
            TensorSpec("cand_cat_ids", "int64", (), "candidate category index + 1"),
            USER_FEATURES,
        ),
        outputs=(
            TensorSpec("logit", "float32", (), "click logit"),
            TensorSpec("prob", "float32", (), "sigmoid(logit), the click probability"),
        ),
        make_example=_din_example,
        # A recommend request brings ~200 candidate rows: room for several concurrent requests per batch.
        max_batch_size=1024,
        atol=1e-4,
        checkpoint="din",
        seq_axis="hist",
        seq_max="max_hist",
        parity_lengths=(1, 7, "max_hist"),
        dim_rules={"n_user_features": _n_user_features},
    )
)


# ---------------------------------------------------------------------------------------------------------
# BERT intent (training/models/intent.py).


def _intent_example(
    config: Mapping[str, object], batch: int, rng: np.random.Generator, length: int | None = None
) -> dict[str, np.ndarray]:
    width = _pick_length(config, "max_len", length, rng)
    n_tokens = rng.integers(1, width + 1, size=batch, dtype=np.int64)  # a real text has >= 1 token
    n_tokens[0] = width
    ids = _padded_ids(rng, int(config["vocab_size"]) - 1, n_tokens, width)  # type: ignore[call-overload]
    mask = (np.arange(width)[None, :] < n_tokens[:, None]).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}


INTENT = register(
    ModelSpec(
        name="intent_bert",
        doc="WordPiece ids -> intent logits and temperature-calibrated probabilities",
        inputs=(
            TensorSpec("input_ids", "int64", (-1,), "WordPiece ids, right-padded with 0", ("tokens",)),
            TensorSpec("attention_mask", "int64", (-1,), "1 = token, 0 = padding", ("tokens",)),
        ),
        outputs=(
            TensorSpec("logits", "float32", ("n_labels",), "uncalibrated logits"),
            TensorSpec("probs", "float32", ("n_labels",), "softmax(logits / temperature), calibrated"),
        ),
        make_example=_intent_example,
        max_batch_size=64,
        atol=2e-4,  # six attention layers in float32 accumulate more rounding than the small models
        checkpoint="intent",
        seq_axis="tokens",
        seq_max="max_len",
        parity_lengths=(3, 16, "max_len"),
        extra={"latency_length": 32},  # a customer-service message is ~10-30 WordPiece tokens
    )
)
# Export's dynamic-int8 copy of the intent model: same tensors as INTENT, its own repository folder.
INTENT_INT8_NAME = f"{INTENT.name}_int8"


# ---------------------------------------------------------------------------------------------------------
# TCN demand forecast (training/models/tcn.py; feature layout in serving/forecast/features.py).


def _tcn_example(
    config: Mapping[str, object], batch: int, rng: np.random.Generator, length: int | None = None
) -> dict[str, np.ndarray]:
    n_past, n_future = int(config["n_past"]), int(config["n_future"])  # type: ignore[call-overload]
    days, horizon = int(config["context_days"]), int(config["horizon"])  # type: ignore[call-overload]
    # Channels are scaled units, an observed flag and known covariates in about [-3, 1]; uniform values in
    # that range exercise every path, and a zeroed head of the window mimics a series launched mid-window.
    past = rng.uniform(-1.0, 1.0, size=(batch, n_past, days)).astype(np.float32)
    past[:, 0] = rng.gamma(1.0, 1.0, size=(batch, days))  # units / scale, >= 0
    launched = rng.integers(0, days, size=batch)
    observed = (np.arange(days)[None, :] >= launched[:, None]).astype(np.float32)
    past[:, 1] = observed
    past[:, 0] *= observed
    return {
        "past_features": past,
        "future_features": rng.uniform(-1.0, 1.0, size=(batch, n_future, horizon)).astype(np.float32),
        "series_scale": (1.0 + rng.exponential(5.0, size=batch)).astype(np.float32),
        "store_ids": rng.integers(1, int(config["n_stores"]) + 1, size=batch, dtype=np.int64),  # type: ignore[call-overload]
        "category_ids": rng.integers(1, int(config["n_categories"]) + 1, size=batch, dtype=np.int64),  # type: ignore[call-overload]
    }


def _n_quantiles(config: Mapping[str, object]) -> int:
    return len(config["quantiles"])  # type: ignore[arg-type]


TCN = register(
    ModelSpec(
        name="tcn",
        doc="one series per row: past window + known future covariates + store/category -> quantiles, mean",
        inputs=(
            TensorSpec("past_features", "float32", ("n_past", "context_days"), "[units_scaled, observed, known...]"),
            TensorSpec("future_features", "float32", ("n_future", "horizon"), "known covariates of the horizon"),
            TensorSpec("series_scale", "float32", (), "per-series scale; outputs are in units/day"),
            TensorSpec("store_ids", "int64", (), "store index + 1 (0 = unknown)"),
            TensorSpec("category_ids", "int64", (), "category index + 1 (0 = unknown)"),
        ),
        outputs=(
            TensorSpec("quantiles", "float32", ("horizon", "n_quantiles"), "units/day at the config's quantiles"),
            TensorSpec("mean", "float32", ("horizon",), "units/day, the point forecast"),
        ),
        make_example=_tcn_example,
        max_batch_size=256,
        atol=1e-4,
        rtol=1e-4,  # outputs are in units (scale up to ~100): relative error is what matters
        checkpoint="tcn",
        dim_rules={"n_quantiles": _n_quantiles},
    )
)


# ---------------------------------------------------------------------------------------------------------
# The TCN asked K plans of one past (/v1/price): the same weights, the encoder run once per row.

TCN_MAX_PLANS = 128  # plans per row: /v1/price sends up to 64 candidates + 2 probes + the current price


def _tcn_plans_example(
    config: Mapping[str, object], batch: int, rng: np.random.Generator, length: int | None = None
) -> dict[str, np.ndarray]:
    plans = int(rng.integers(1, TCN_MAX_PLANS + 1)) if length is None else int(length)
    one = _tcn_example(config, batch, rng)
    n_future, horizon = int(config["n_future"]), int(config["horizon"])  # type: ignore[call-overload]
    future = rng.uniform(-1.0, 1.0, size=(batch, plans, n_future, horizon)).astype(np.float32)
    return {
        "past_features": one["past_features"],
        "future_plans": future,
        **{k: one[k] for k in ("series_scale", "store_ids", "category_ids")},
    }


TCN_PLANS = register(
    ModelSpec(
        name="tcn_plans",
        doc="one series per row with K plans of the horizon (candidate prices): the TCN's answer for each plan",
        inputs=(
            TCN.inputs[0],
            TensorSpec(
                "future_plans", "float32", (-1, "n_future", "horizon"), "future_features of each plan", ("plans",)
            ),
            *TCN.inputs[2:],
        ),
        outputs=(
            TensorSpec("quantiles", "float32", (-1, "horizon", "n_quantiles"), "per plan, units/day", ("plans",)),
            TensorSpec("mean", "float32", (-1, "horizon"), "per plan, units/day", ("plans",)),
        ),
        make_example=_tcn_plans_example,
        # A row is a whole price question (one past, ~24 plans).
        max_batch_size=64,
        atol=TCN.atol,  # parity with the TCN row by row is held to the TCN's own tolerance (tests/export)
        rtol=TCN.rtol,
        checkpoint="tcn",  # the TCN's weights: no training of its own
        seq_axis="plans",
        seq_max=TCN_MAX_PLANS,
        parity_lengths=(1, 3, 24, TCN_MAX_PLANS),
        dim_rules={"n_quantiles": _n_quantiles},
        # Exported whenever the TCN is, so the two always carry the same checkpoint; timed at a 21-price question.
        extra={"exported_with": "tcn", "latency_length": 24},
    )
)
