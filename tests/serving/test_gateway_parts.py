"""The gateway's pieces on tiny data: settings, id maps, feature assembly, FAISS retrieval, intent decisions."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from pydantic import ValidationError

from serving.contracts.errors import InvalidInput
from serving.contracts.ids import IdMap
from serving.intent.codec import IntentCodec, IntentMetadata, softmax
from serving.intent.pipeline import pick_intent_model
from serving.recommend.features import ItemTable, UserTable, din_inputs, history_inputs
from serving.recommend.retrieval import Retriever
from serving.runtime.backends.base import ModelInfo
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("SERVING_PORT", "9000")
    monkeypatch.setenv("SERVING_BACKEND", "triton")
    monkeypatch.setenv("SERVING_MODELS", '["din", "user_tower"]')
    monkeypatch.setenv("SERVING_LOG_LEVEL", "DEBUG")
    s = Settings()
    assert (s.port, s.backend, s.models, s.log_level) == (9000, "triton", ("din", "user_tower"), "debug")
    (tmp_path / ".env").write_text("SERVING_REQUEST_TIMEOUT_S=2.5\n")
    assert Settings().request_timeout_s == 2.5
    monkeypatch.setenv("SERVING_BACKEND", "tensorflow")
    with pytest.raises(ValidationError, match="backend"):
        Settings()


def test_id_maps_for_string_and_integer_catalogues():
    strings = IdMap(np.array(["b", "a", "c"]))
    assert strings.lookup(["c", "a", "zz"]).tolist() == [2, 1, -1]
    assert strings.to_shop(np.array([0, 2])) == ["b", "c"]
    ints = IdMap(np.array([30, 10, 20], dtype=np.int64))
    assert ints.lookup([10, "20", "x", 99, -5]).tolist() == [1, 2, -1, -1, -1]
    with pytest.raises(InvalidInput) as err:
        ints.require([10, 7, 8], "item_ids")
    assert err.value.loc == ["body", "item_ids", 1] and "1 more" in err.value.msg
    with pytest.raises(ValueError, match="unique"):
        IdMap(np.array(["a", "a"]))
    assert IdMap(np.array([], dtype=np.int64)).lookup([1]).tolist() == [-1]


def test_history_rows_keep_the_latest_items_and_shift_ids():
    category = np.array([0, 1, 2, 3, 4])
    rows = history_inputs(np.array([0, 1, 2, 3, 4]), category, rows=2, max_len=3)
    assert rows["hist_item_ids"].tolist() == [[3, 4, 5]] * 2  # the 3 most recent, +1
    assert rows["hist_cat_ids"].tolist() == [[3, 4, 5]] * 2 and rows["hist_len"].tolist() == [3, 3]
    empty = history_inputs(np.zeros(0, np.int64), category, rows=1, max_len=3)
    assert empty["hist_item_ids"].tolist() == [[0]] and empty["hist_len"].tolist() == [0]
    items = ItemTable(IdMap(np.array(["a", "b", "c", "d", "e"])), category)
    din = din_inputs(np.array([1]), np.array([4, 2]), items, None, np.array([2, 0]))
    assert din["cand_item_ids"].tolist() == [5, 3] and din["user_features"].tolist() == [[2, 0], [2, 0]]


def test_popularity_list_skips_out_of_stock_and_excluded():
    items = ItemTable(
        IdMap(np.array(["a", "b", "c", "d"])),
        np.zeros(4, np.int64),
        popularity=np.array([5.0, 9.0, 1.0, 7.0]),
        available=np.array([True, False, True, True]),
    )
    assert items.popular(3).tolist() == [3, 0, 2]
    assert items.popular(3, exclude=np.array([0])).tolist() == [3, 2]


def test_user_table_history_and_features():
    users = UserTable(
        IdMap(np.array([7, 8])), np.array([0, 2, 2]), np.array([4, 1]), features=np.array([[0, -1], [2, 1]])
    )
    assert users.history(0).tolist() == [4, 1] and users.history(1).tolist() == []
    assert users.feature_row(0, 2).tolist() == [1, 0]  # code + 1; unknown (-1) -> 0
    assert users.feature_row(None, 2).tolist() == [0, 0]


@pytest.fixture(scope="module")
def vectors():
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_retrieval_excludes_seen_and_blocked_items(vectors):
    index = faiss.IndexFlatIP(16)
    index.add(vectors)
    r = Retriever(index, gpu="off")
    exact = np.argsort(-(vectors @ vectors[0]))
    _, ids = r.search(vectors[0], 5)
    assert ids[0].tolist() == exact[:5].tolist()
    blocked = np.zeros(300, bool)
    blocked[exact[5:40]] = True  # the over-fetch alone cannot skip these: the search has to widen
    _, ids = r.search(vectors[0], 5, exclude=exact[:3], blocked=blocked)
    want = [i for i in exact if i not in set(exact[:3]) and not blocked[i]][:5]
    assert ids[0].tolist() == want
    _, ids = r.search(vectors[:2], 3, exclude=np.array([[exact[0], -1], [-1, -1]]))
    assert exact[0] not in ids[0] and ids.shape == (2, 3)
    scores, ids = r.search(vectors[0], 400)  # more than the index holds: padded with -1
    assert (ids[0, 300:] == -1).all() and np.isinf(scores[0, 300:]).all()
    with pytest.raises(ValueError, match="dim"):
        r.search(np.ones((1, 3), np.float32), 1)


def test_retrieval_search_settings(vectors):
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors)
    ivf.add(vectors)
    r = Retriever(ivf, nprobe=8, gpu="off")  # all lists: exact
    assert faiss.extract_index_ivf(r.index).nprobe == 8 and r.describe()["kind"] == "ivf"
    _, ids = r.search(vectors[3], 4)
    assert ids[0].tolist() == np.argsort(-(vectors @ vectors[3]))[:4].tolist()
    hnsw = faiss.IndexHNSWFlat(16, 8, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(vectors)
    assert Retriever(hnsw, ef_search=77, gpu="off").index.hnsw.efSearch == 77
    with pytest.raises(ValueError, match="nprobe"):
        Retriever(faiss.IndexFlatIP(16), nprobe=4)


def test_intent_decisions(tmp_path):
    g.build_artifacts(tmp_path, manifest=False)
    clf = IntentCodec.load(tmp_path)
    enc = clf.encode(["my card", "where is my card please now lost lost lost lost lost"])
    assert enc["input_ids"].shape == (2, g.MAX_TOKENS)  # truncated to max_len, padded to the longest
    assert enc["attention_mask"][0].tolist() == [1, 1] + [0] * (g.MAX_TOKENS - 2)
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.3, 0.2, 0.4, 0.1], [0.1, 0.8, 0.05, 0.05]])
    out = clf.decide(probs)
    assert [o["intent"] for o in out] == ["card_arrival", "refund", "lost_card"]
    assert [o["handoff"] for o in out] == [False, True, True]  # confident; below 0.5; an always-handed-off intent
    assert [t["intent"] for t in out[1]["top"]] == ["refund", "card_arrival", "lost_card"]
    logits = np.array([[2.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(clf.probabilities({"logits": logits}), softmax(logits, 1.5))
    with pytest.raises(ValueError, match="labels"):
        clf.probabilities({"probs": np.ones((1, 3))})
    with pytest.raises(ValueError, match="handoff_intents"):
        IntentMetadata.from_dict({"labels": ["a"], "handoff_intents": ["b"]})
    (tmp_path / "intent" / "intent.json").write_text('{"labels": ["a"], "tokenizer_sha256": "00"}')
    with pytest.raises(ValueError, match="not the tokenizer"):
        IntentCodec.load(tmp_path)


def _info(name: str, providers: tuple[str, ...]) -> ModelInfo:
    return ModelInfo(name=name, version=1, inputs=(), outputs=(), max_batch_size=8, providers=providers)


def test_auto_intent_model_is_int8_only_on_the_embedded_cpu_backend():
    cpu, cuda = ("CPUExecutionProvider",), ("CUDAExecutionProvider", "CPUExecutionProvider")
    both = {"intent_bert": _info("intent_bert", cpu), "intent_bert_int8": _info("intent_bert_int8", cpu)}
    assert pick_intent_model("auto", "embedded", both) == "intent_bert_int8"
    assert pick_intent_model("auto", "triton", both) == "intent_bert"  # Triton decides devices itself
    assert pick_intent_model("auto", "embedded", {"intent_bert": both["intent_bert"]}) == "intent_bert"
    on_gpu = {**both, "intent_bert_int8": _info("intent_bert_int8", cuda)}
    assert pick_intent_model("auto", "embedded", on_gpu) == "intent_bert"
    assert pick_intent_model("intent_bert", "embedded", both) == "intent_bert"  # an explicit choice stands


def test_integer_catalogue_refuses_non_ascii_digits_as_unknown_ids():
    """Found by the schema fuzzer: "²" is a digit to str.isdigit but not to int()."""
    ids = IdMap(np.array([1, 2, 23]))
    assert ids.lookup(["²", "٣", "23", "2"]).tolist() == [-1, -1, 2, 1]
