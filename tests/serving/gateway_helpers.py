"""Tiny stand-ins for the exported models and artifacts, built with onnx.helper and numpy (no torch).

The models have the tensor names of serving/contracts/model_specs.py and the one property the gateway relies on:
padding (id 0, mask 0) never changes an output, because embedding row 0 is all zeros and lengths come
from `hist_len` / the mask. Everything is written into a Triton-layout repository with config.pbtxt.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import faiss
import httpx
import numpy as np
import onnx
from fastapi import FastAPI
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers

from serving.contracts.errors import InvalidInput
from serving.contracts.model_specs import DIN, INTENT, USER_TOWER, ModelSpec, TensorSpec
from serving.contracts.triton_config import TritonOptions, build_config, config_text
from serving.forecast.source import ForecastInputs
from serving.runtime.manifest import write_manifest

OPSET = 18
N_ITEMS, N_CATS, DIM, MAX_HIST = 40, 5, 8, 6
N_USERS = 12
LABELS = ("card_arrival", "lost_card", "refund", "balance")
VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "my", "card", "lost", "refund", "please", "balance", "where", "is")
MAX_TOKENS = 8

I64, F32 = TensorProto.INT64, TensorProto.FLOAT


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def item_table(seed: int = 0) -> np.ndarray:
    """[N_ITEMS + 1, DIM] embeddings, row 0 (padding) zero."""
    table = np.random.default_rng(seed).standard_normal((N_ITEMS + 1, DIM)).astype(np.float32)
    table[0] = 0
    return table


def _mean_history(nodes: list, table: str, ids: str, length: str, out: str) -> None:
    """out [B, DIM] = sum of table rows of ids / max(length, 1)."""
    nodes += [
        helper.make_node("Gather", [table, ids], [f"{out}_g"], axis=0),
        helper.make_node("ReduceSum", [f"{out}_g", "axis1"], [f"{out}_s"], keepdims=0),
        helper.make_node("Cast", [length], [f"{out}_lf"], to=F32),
        helper.make_node("Max", [f"{out}_lf", "one"], [f"{out}_lm"]),
        helper.make_node("Unsqueeze", [f"{out}_lm", "axis1"], [f"{out}_l2"]),
        helper.make_node("Div", [f"{out}_s", f"{out}_l2"], [out]),
    ]


USER_CARD = 3  # values per categorical user feature (fed as value + 1, 0 = unknown)


def _user_feature_inputs(n_features: int) -> list:
    return [helper.make_tensor_value_info("user_features", I64, ["batch", n_features])] if n_features else []


def user_tower_graph(scale: float = 1.0, n_features: int = 0) -> onnx.GraphProto:
    table = item_table() * scale
    nodes: list = []
    _mean_history(nodes, "E", "hist_item_ids", "hist_len", "h")
    nodes += [
        helper.make_node("Gather", ["C", "hist_cat_ids"], ["c_g"], axis=0),
        helper.make_node("ReduceSum", ["c_g", "axis1"], ["c_s"], keepdims=0),
        helper.make_node("Add", ["h", "c_s"], ["u0"]),
    ]
    if n_features:  # a known user's attributes move the vector; unknown (0) rows are zero
        nodes += [
            helper.make_node("Gather", ["UF", "user_features"], ["uf_g"], axis=0),
            helper.make_node("ReduceSum", ["uf_g", "axis1"], ["uf"], keepdims=0),
            helper.make_node("Add", ["u0", "uf"], ["u"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["u0"], ["u"]))
    nodes += [
        helper.make_node("Add", ["u", "bias"], ["u_b"]),  # an empty history still has a direction
        helper.make_node("ReduceL2", ["u_b", "axis1"], ["n"], keepdims=1),
        helper.make_node("Max", ["n", "eps"], ["n_e"]),
        helper.make_node("Div", ["u_b", "n_e"], ["u_unit"]),
        helper.make_node("Unsqueeze", ["u_unit", "axis1"], ["user_embedding"]),  # [batch, 1 interest, dim]
    ]
    cats = np.zeros((N_CATS + 1, DIM), np.float32)
    cats[1:] = 0.01
    inits = [
        _const("E", table),
        _const("C", cats),
        _const("bias", np.full(DIM, 0.05, np.float32)),
        _const("axis1", np.array([1], np.int64)),
        _const("one", np.array(1.0, np.float32)),
        _const("eps", np.array(1e-6, np.float32)),
    ]
    if n_features:
        uf = np.random.default_rng(5).standard_normal((USER_CARD + 1, DIM)).astype(np.float32)
        uf[0] = 0
        inits.append(_const("UF", uf))
    return helper.make_graph(
        nodes,
        "user_tower",
        [
            helper.make_tensor_value_info("hist_item_ids", I64, ["batch", "hist"]),
            helper.make_tensor_value_info("hist_cat_ids", I64, ["batch", "hist"]),
            helper.make_tensor_value_info("hist_len", I64, ["batch"]),
            *_user_feature_inputs(n_features),
        ],
        [helper.make_tensor_value_info("user_embedding", F32, ["batch", 1, DIM])],
        inits,
    )


def din_graph(scale: float = 1.0, n_features: int = 0) -> onnx.GraphProto:
    nodes: list = []
    _mean_history(nodes, "E", "hist_item_ids", "hist_len", "h")
    nodes += [
        helper.make_node("Gather", ["E", "cand_item_ids"], ["c"], axis=0),
        helper.make_node("Mul", ["h", "c"], ["hc"]),
        helper.make_node("ReduceSum", ["hc", "axis1"], ["dot"], keepdims=0),
        helper.make_node("Gather", ["cat_bias", "cand_cat_ids"], ["cb"], axis=0),
        helper.make_node("Add", ["dot", "cb"], ["logit0"]),
    ]
    if n_features:  # a per-value bias: known users' attributes shift every score
        nodes += [
            helper.make_node("Gather", ["user_bias", "user_features"], ["ub"], axis=0),
            helper.make_node("ReduceSum", ["ub", "axis1"], ["ubs"], keepdims=0),
            helper.make_node("Add", ["logit0", "ubs"], ["logit"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["logit0"], ["logit"]))
    nodes.append(helper.make_node("Sigmoid", ["logit"], ["prob"]))
    inits = [
        _const("E", item_table() * scale),
        _const("cat_bias", np.linspace(-0.2, 0.2, N_CATS + 1).astype(np.float32)),
        _const("axis1", np.array([1], np.int64)),
        _const("one", np.array(1.0, np.float32)),
    ]
    ins = [
        helper.make_tensor_value_info("hist_item_ids", I64, ["batch", "hist"]),
        helper.make_tensor_value_info("hist_cat_ids", I64, ["batch", "hist"]),
        helper.make_tensor_value_info("hist_len", I64, ["batch"]),
        helper.make_tensor_value_info("cand_item_ids", I64, ["batch"]),
        helper.make_tensor_value_info("cand_cat_ids", I64, ["batch"]),
        *_user_feature_inputs(n_features),
    ]
    if n_features:
        inits.append(_const("user_bias", np.array([0.0, 0.5, -0.5, 1.0], np.float32)))
    outs = [helper.make_tensor_value_info(n, F32, ["batch"]) for n in ("logit", "prob")]
    return helper.make_graph(nodes, "din", ins, outs, inits)


def intent_graph(temperature: float = 1.5) -> onnx.GraphProto:
    """Masked mean of per-token label scores -> logits; probs = softmax(logits / T)."""
    emb = np.random.default_rng(1).standard_normal((len(VOCAB), len(LABELS))).astype(np.float32) * 3
    emb[0] = 0
    nodes = [
        helper.make_node("Gather", ["W", "input_ids"], ["g"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=F32),
        helper.make_node("Unsqueeze", ["m", "axis2"], ["m3"]),
        helper.make_node("Mul", ["g", "m3"], ["gm"]),
        helper.make_node("ReduceSum", ["gm", "axis1"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["m", "axis1"], ["cnt"], keepdims=1),
        helper.make_node("Max", ["cnt", "one"], ["cnt1"]),
        helper.make_node("Div", ["s", "cnt1"], ["logits"]),
        helper.make_node("Div", ["logits", "T"], ["lt"]),
        helper.make_node("Softmax", ["lt"], ["probs"], axis=-1),
    ]
    inits = [
        _const("W", emb),
        _const("axis1", np.array([1], np.int64)),
        _const("axis2", np.array([2], np.int64)),
        _const("one", np.array(1.0, np.float32)),
        _const("T", np.array(temperature, np.float32)),
    ]
    ins = [helper.make_tensor_value_info(n, I64, ["batch", "tokens"]) for n in ("input_ids", "attention_mask")]
    outs = [helper.make_tensor_value_info(n, F32, ["batch", len(LABELS)]) for n in ("logits", "probs")]
    return helper.make_graph(nodes, "intent_bert", ins, outs, inits)


def tcn_graph(horizon: int = 28) -> onnx.GraphProto:
    """quantiles [B, H, 3] = mean(past_units) * (0.5, 1, 1.5) on every day."""
    nodes = [
        helper.make_node("ReduceMean", ["past_units", "axis1"], ["m"], keepdims=1),  # [B, 1]
        helper.make_node("Unsqueeze", ["m", "axis2"], ["m3"]),  # [B, 1, 1]
        helper.make_node("Mul", ["m3", "shape"], ["quantiles"]),  # [B, H, 3]
    ]
    shape = np.tile(np.array([0.5, 1.0, 1.5], np.float32), (horizon, 1))
    inits = [_const("axis1", np.array([1], np.int64)), _const("axis2", np.array([2], np.int64)), _const("shape", shape)]
    ins = [helper.make_tensor_value_info("past_units", F32, ["batch", 7])]
    outs = [helper.make_tensor_value_info("quantiles", F32, ["batch", horizon, 3])]
    return helper.make_graph(nodes, "tcn", ins, outs, inits)


def sum_graph(factor: float) -> onnx.GraphProto:
    """y [B] = factor * sum(x [B, n]): zero padding along n changes nothing."""
    nodes = [
        helper.make_node("ReduceSum", ["x", "axis1"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "f"], ["y"]),
    ]
    inits = [_const("axis1", np.array([1], np.int64)), _const("f", np.array(factor, np.float32))]
    ins = [helper.make_tensor_value_info("x", F32, ["batch", "n"])]
    outs = [helper.make_tensor_value_info("y", F32, ["batch"])]
    return helper.make_graph(nodes, "summer", ins, outs, inits)


# ---- config.pbtxt, built from the specs by serving/contracts/triton_config.py (as export builds them)

CPU = TritonOptions(gpu=False)


def spec_config(user_features: int = 0) -> dict[str, object]:
    """The checkpoint config of the tiny models: what the specs' dims, dim rules and example makers read."""
    return {
        "n_items": N_ITEMS,
        "n_categories": N_CATS,
        "dim": DIM,
        "max_hist": MAX_HIST,
        "user_feature_cardinalities": [USER_CARD] * user_features,
        "max_len": MAX_TOKENS,
        "vocab_size": len(VOCAB),
        "n_labels": len(LABELS),
    }


def _fake_spec(name: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], **kw) -> ModelSpec:
    """A spec for a fake model that is no served model's contract (the one-input tcn stand-in, summer)."""

    def make_example(config, batch, rng, length=None):
        return {t.name: np.zeros(t.batched_shape(batch, length), t.dtype) for t in inputs}

    return ModelSpec(name, inputs, outputs, make_example, **kw)


FAKE_TCN = _fake_spec(
    "tcn", (TensorSpec("past_units", "float32", (7,)),), (TensorSpec("quantiles", "float32", (28, 3)),)
)
SUMMER = _fake_spec(
    "summer", (TensorSpec("x", "float32", (-1,)),), (TensorSpec("y", "float32", ()),), seq_axis="n", seq_max=4
)


def category_table(seed: int = 7) -> np.ndarray:
    """[N_CATS + 1, DIM] the tiny item tower's category vectors, row 0 (unknown) zero."""
    table = np.random.default_rng(seed).standard_normal((N_CATS + 1, DIM)).astype(np.float32)
    table[0] = 0
    return table


def item_tower_graph(categories: np.ndarray | None = None) -> onnx.GraphProto:
    """item_embedding = normalise(E[item_ids] + CAT[cat_ids] + 0.1 * (brand_ids > 0) + 0.01 * price_bucket):
    an added item (id 0) points where its category's vector does; brand and price move it a little."""
    cat = category_table() if categories is None else categories.astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["E", "item_ids"], ["e"], axis=0),
        helper.make_node("Gather", ["CAT", "cat_ids"], ["c"], axis=0),
        helper.make_node("Add", ["e", "c"], ["ec"]),
        helper.make_node("Greater", ["brand_ids", "zero"], ["has_brand"]),
        helper.make_node("Cast", ["has_brand"], ["bf"], to=F32),
        helper.make_node("Cast", ["price_bucket"], ["pf"], to=F32),
        helper.make_node("Mul", ["pf", "hundredth"], ["pf_s"]),
        helper.make_node("Mul", ["bf", "tenth"], ["bf_s"]),
        helper.make_node("Add", ["bf_s", "pf_s"], ["shift"]),
        helper.make_node("Unsqueeze", ["shift", "axis1"], ["shift2"]),
        helper.make_node("Add", ["ec", "shift2"], ["v"]),
        helper.make_node("ReduceL2", ["v", "axis1"], ["n"], keepdims=1),
        helper.make_node("Max", ["n", "eps"], ["n_e"]),
        helper.make_node("Div", ["v", "n_e"], ["item_embedding"]),
    ]
    inits = [
        _const("E", item_table()),
        _const("CAT", cat),
        _const("zero", np.array(0, np.int64)),
        _const("tenth", np.array(0.1, np.float32)),
        _const("hundredth", np.array(0.01, np.float32)),
        _const("axis1", np.array([1], np.int64)),
        _const("eps", np.array(1e-6, np.float32)),
    ]
    inputs = [
        helper.make_tensor_value_info(n, I64, ["batch"]) for n in ("item_ids", "cat_ids", "brand_ids", "price_bucket")
    ]
    return helper.make_graph(
        nodes, "item_tower", inputs, [helper.make_tensor_value_info("item_embedding", F32, ["batch", DIM])], inits
    )


def write_item_tower(artifacts: Path, categories: np.ndarray | None = None) -> Path:
    """The tiny item tower where export puts it (artifacts/models/item_tower/model.onnx)."""
    path = artifacts / "models" / "item_tower" / "model.onnx"
    _save(item_tower_graph(categories), path)
    return path


def write_tiny_config(
    repo: Path, spec: ModelSpec, config: dict[str, object], *, max_batch_size: int = 64, delay_us: int = 2000
) -> Path:
    """<repo>/<model>/config.pbtxt for `spec` with the tiny models' batching (KIND_CPU, no preferred sizes)."""
    spec = replace(spec, max_batch_size=max_batch_size, max_queue_delay_us=delay_us, preferred_batch_sizes=())
    path = repo / spec.name / "config.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(build_config(spec, config, CPU), header=""))
    return path


def add_user_tower(repo: Path, version: int = 1, scale: float = 1.0, user_features: int = 0) -> None:
    write_tiny_config(repo, USER_TOWER, spec_config(user_features), max_batch_size=16, delay_us=1000)
    _save(user_tower_graph(scale, user_features), repo / "user_tower" / str(version) / "model.onnx")


def add_din(
    repo: Path,
    version: int = 1,
    scale: float = 1.0,
    max_batch_size: int = 256,
    user_features: int = 0,
    name: str = DIN.name,  # another name: a second DIN beside the first (an experiment's arm)
) -> None:
    write_tiny_config(repo, replace(DIN, name=name), spec_config(user_features), max_batch_size=max_batch_size)
    _save(din_graph(scale, user_features), repo / name / str(version) / "model.onnx")


def add_intent(repo: Path, version: int = 1) -> None:
    write_tiny_config(repo, INTENT, spec_config(), max_batch_size=8, delay_us=2000)
    _save(intent_graph(), repo / "intent_bert" / str(version) / "model.onnx")


def add_tcn(repo: Path, version: int = 1) -> None:
    write_tiny_config(repo, FAKE_TCN, {}, max_batch_size=8)
    _save(tcn_graph(), repo / "tcn" / str(version) / "model.onnx")


def add_summer(
    repo: Path, version: int = 1, factor: float = 1.0, max_batch_size: int = 8, delay_us: int = 20000
) -> None:
    write_tiny_config(repo, SUMMER, {}, max_batch_size=max_batch_size, delay_us=delay_us)
    _save(sum_graph(factor), repo / "summer" / str(version) / "model.onnx")


def build_repository(repo: Path) -> Path:
    add_user_tower(repo)
    add_din(repo)
    add_intent(repo)
    add_tcn(repo)
    return repo


# ---- artifacts


def item_ids() -> np.ndarray:
    return np.array([f"i{i}" for i in range(N_ITEMS)])


def build_artifacts(root: Path, repo: Path | None = None, manifest: bool = True) -> Path:
    """items/users tables, a flat FAISS index over the tiny item embeddings, the intent tokenizer, a manifest."""
    rng = np.random.default_rng(3)
    (root / "features").mkdir(parents=True, exist_ok=True)
    available = np.ones(N_ITEMS, bool)
    available[N_ITEMS - 1] = False  # the most popular item is out of stock
    np.savez(
        root / "features" / "items.npz",
        item_ids=item_ids(),
        category=(np.arange(N_ITEMS) % N_CATS).astype(np.int64),
        popularity=np.arange(N_ITEMS, dtype=np.float64),
        available=available,
    )
    lengths = rng.integers(0, 9, N_USERS)
    lengths[0] = 0  # user 100 is known but has no history
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    np.savez(
        root / "features" / "users.npz",
        user_ids=np.arange(100, 100 + N_USERS, dtype=np.int64),
        hist_offsets=offsets,
        hist_items=rng.integers(0, N_ITEMS - 1, int(offsets[-1])),
        user_features=rng.integers(-1, USER_CARD, (N_USERS, 2)),  # raw codes; -1 = unknown
    )
    vectors = item_table()[1:]
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors.astype(np.float32))
    (root / "retrieval").mkdir(exist_ok=True)
    faiss.write_index(index, str(root / "retrieval" / "items.faiss"))
    (root / "intent").mkdir(exist_ok=True)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(root / "intent" / "tokenizer.json"))
    meta = {
        "labels": list(LABELS),
        "temperature": 1.5,
        "threshold": 0.5,
        "max_len": MAX_TOKENS,
        "handoff_intents": ["lost_card"],
    }
    (root / "intent" / "intent.json").write_text(json.dumps(meta))
    write_item_tower(root)
    if manifest:
        write_repo_manifest(root, repo)
    return root


def write_repo_manifest(root: Path, repo: Path | None) -> None:
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"]
    sections: dict = {
        "retrieval": {
            "file": "artifacts/retrieval/items.faiss",
            "item_count": N_ITEMS,
            "embedding_dim": DIM,
            "index_type": "flat",
            "index_params": {},
        }
    }
    roots = {"artifacts": "."}
    if repo is not None:
        onnx_files = sorted(repo.glob("*/*/model.onnx"))
        files += onnx_files
        sections["models"] = {p.parent.parent.name: {"version": int(p.parent.name)} for p in onnx_files}
        roots["model_repository"] = str(repo)
    write_manifest(root / "manifest.json", files, sections, roots)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and an async client talking to it in-process."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        yield c


class FakeSeries:
    """Stands in for the stored sales (none in the tiny artifacts): the last 7 days of units, for one known series."""

    def build(self, store_id, item_id, history):
        if history is None:
            if (store_id, item_id) != (1, 42):
                raise InvalidInput(["item_id"], "no stored sales for this (store_id, item_id); send history")
            units, end = [3.0] * 7, dt.date(2024, 3, 31)
        else:
            units, end = [u or 0.0 for u in history.units][-7:], history.end_date
        units = [0.0] * (7 - len(units)) + units
        return ForecastInputs({"past_units": np.array([units], np.float32)}, end + dt.timedelta(days=1))


def build_gateway_files(root: Path) -> Path:
    """The tiny models (root/model_repository) and their artifacts (root/artifacts); -> root."""
    build_artifacts(root / "artifacts", build_repository(root / "model_repository"))
    return root
