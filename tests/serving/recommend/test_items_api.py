"""POST /v1/items and /v1/items/delete over the tiny models: an added item is recommended at once to a user whose
vector is near it (no retraining), stock and deletes take items out of every list, bad bodies name the field,
the gRPC calls answer the same, and two gateway processes on one Redis see each other's catalogue changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.recommend.features import FeatureStore, user_tower_inputs
from serving.runtime.settings import Settings
from tests.serving import gateway_helpers as g
from tests.serving import gateway_process as gp

pytestmark = pytest.mark.timeout(90)
HISTORY = ["i3", "i8", "i12"]
NEAR_CATEGORY = 2  # the tiny item tower puts an added item of this category on the HISTORY user's vector


def user_vector(root: Path, history: list[str]) -> np.ndarray:
    """The tiny user tower's vector for a history, computed outside the gateway."""
    fs = FeatureStore.load(root / "artifacts")
    hist = fs.items.ids.lookup(history)
    session = ort.InferenceSession(str(root / "model_repository" / "user_tower" / "1" / "model.onnx"))
    return session.run(None, user_tower_inputs(hist, fs.items, g.MAX_HIST, None))[0][0]


def build(root: Path) -> Path:
    """The tiny gateway files, with an item tower whose category NEAR_CATEGORY points along the HISTORY user."""
    g.build_gateway_files(root)
    categories = g.category_table()
    categories[NEAR_CATEGORY + 1] = 10 * user_vector(root, HISTORY)
    g.write_item_tower(root / "artifacts", categories)
    g.write_repo_manifest(root / "artifacts", root / "model_repository")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("items"))


@contextmanager
def gateway(root, **kw) -> Iterator[TestClient]:
    base = {"model_repository": root / "model_repository", "artifacts": root / "artifacts", "execution_provider": "cpu"}
    with TestClient(create_app(Settings(**{**base, "grpc_enabled": False, **kw}))) as c:
        yield c


def post(c, path: str, body: dict) -> dict:
    r = c.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def top(c, user="u-near", **kw) -> list:
    """Retrieval decides the answer: k = candidates, so ranking only orders what FAISS found."""
    body = {"user_id": user, "history": HISTORY, "k": 5, "candidates": 5, **kw}
    return [i["item_id"] for i in post(c, "/v1/recommend", body)["items"]]


def test_an_added_item_is_recommended_at_once_and_stock_and_deletes_take_items_out(built):
    with gateway(built) as c:
        before = top(c)
        assert "new-near" not in before
        answer = post(c, "/v1/items", {"items": [{"item_id": "new-near", "category_id": NEAR_CATEGORY, "price": 9.5}]})
        assert answer == {"accepted": 1, "added": 1, "unknown": 0, "catalogue_version": 1, "catalogue_items": 41}
        assert "new-near" in top(c)
        # Events on it are no longer on an unknown item; a history naming it is not `ignored`.
        events = {"events": [{"user_id": "u-near", "item_id": "new-near", "event_type": "click"}]}
        assert post(c, "/v1/events", events)["unknown_items"] == 0
        assert post(c, "/v1/recommend", {"user_id": "x", "history": ["new-near"], "k": 3})["ignored"] == 0

        # Out of stock: out of the personal and the popular list at once; back in stock: back.
        def popular() -> list:
            return [i["item_id"] for i in post(c, "/v1/recommend", {"user_id": "nobody", "k": 5})["items"]]

        first = popular()[0]
        post(c, "/v1/items", {"items": [{"item_id": i, "in_stock": False} for i in ("new-near", first)]})
        assert "new-near" not in top(c)
        assert first not in popular()
        post(c, "/v1/items", {"items": [{"item_id": "new-near", "in_stock": True}]})
        assert "new-near" in top(c)
        gone = top(c)[0]
        answer = post(c, "/v1/items/delete", {"item_ids": [gone, "never-was"]})
        assert answer["accepted"] == 1 and answer["unknown"] == 1 and answer["catalogue_version"] == 5
        assert gone not in top(c)
        writes = {line.split("}")[0]: float(line.split()[-1]) for line in c.get("/metrics").text.splitlines()
                  if line.startswith("gateway_catalogue_writes_total")}  # fmt: skip
        assert writes == {'gateway_catalogue_writes_total{kind="added"': 1.0,
                          'gateway_catalogue_writes_total{kind="updated"': 3.0,
                          'gateway_catalogue_writes_total{kind="deleted"': 1.0}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"items": [{"item_id": "brand-new", "price": 3.0}]}, ["body", "items", 0, "category_id"]),
        ({"items": [{"item_id": "i1", "price": -1}]}, ["body", "items", 0, "price"]),
        ({"items": [{"item_id": "i1", "price": "1e999"}]}, ["body", "items", 0, "price"]),
        ({"items": [{"item_id": "i1", "in_stock": "no"}]}, ["body", "items", 0, "in_stock"]),
        ({"items": [{"item_id": "i1", "colour": "red"}]}, ["body", "items", 0, "colour"]),
        ({"items": []}, ["body", "items"]),
        ({"items": [{"item_id": f"n{i}", "category_id": 1} for i in range(1001)]}, ["body", "items"]),
        ({"item_ids": []}, ["body", "items"]),
    ],
)
def test_bad_item_writes_are_422_naming_the_field_and_change_nothing(built, body, loc):
    with gateway(built) as c:
        r = c.post("/v1/items", json=body)
        assert r.status_code == 422, r.text
        assert any(d["loc"][: len(loc)] == loc for d in r.json()["detail"]), r.json()
        assert post(c, "/v1/items/delete", {"item_ids": ["i1"]})["catalogue_version"] == 1  # nothing was written


def test_a_new_item_named_twice_in_one_batch_needs_its_category_only_the_first_time(built):
    with gateway(built) as c:
        body = {"items": [{"item_id": "pair", "category_id": 1}, {"item_id": "pair", "price": 4.0}]}
        assert post(c, "/v1/items", body)["added"] == 1
        assert c.post("/v1/items/delete", json={"item_ids": [""]}).status_code == 422


@pytest.mark.slow
def test_two_gateways_on_one_redis_see_each_others_catalogue_changes(tmp_path, redis_server):
    root = build(tmp_path)
    store = {"online_store": redis_server.url, "online_timeout_ms": "1000"}
    with gp.gateway(root, **store) as a, gp.gateway(root, **store) as b:
        a.wait_ready()
        b.wait_ready()
        with httpx.Client(base_url=a.base, timeout=10) as ca, httpx.Client(base_url=b.base, timeout=10) as cb:
            v0 = post(ca, "/v1/items/delete", {"item_ids": ["none"]})["catalogue_version"]  # other tests share Redis
            assert "two-near" not in top(cb)
            body = {"items": [{"item_id": "two-near", "category_id": NEAR_CATEGORY}]}
            assert post(ca, "/v1/items", body)["catalogue_version"] == v0 + 1
            assert "two-near" in top(cb)  # A's new item, on B's very next recommendation
            post(cb, "/v1/items", {"items": [{"item_id": "two-near", "in_stock": False}]})
            assert "two-near" not in top(ca)  # B's stock change, on A
    for gw in (a, b):
        assert "Traceback" not in gw.log.read_text()
