"""The live catalogue's parts over the tiny artifacts: applying the store's changes (added, changed, out of stock,
deleted items), the main + delta index, the item tower's input coding, and ids added after the export."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.contracts.ids import IdMap
from serving.recommend.catalogue import ExtendedIds, LiveCatalogue
from serving.recommend.features import FeatureStore, din_inputs
from serving.recommend.item_encoder import ItemCoding, ItemEncoder, _recovered_edges
from serving.recommend.live_index import LiveIndex
from serving.recommend.retrieval import Retriever, normalise
from serving.runtime.online_store import ItemChange, MemoryStore
from tests.serving import gateway_helpers as g


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return g.build_artifacts(tmp_path_factory.mktemp("catalogue") / "artifacts")


def catalogue(root) -> LiveCatalogue:
    features = FeatureStore.load(root)
    with np.load(root / "features" / "items.npz") as f:
        coding = ItemCoding.from_npz({k: f[k] for k in f.files})
    retriever = Retriever.load(root / "retrieval" / "items.faiss")
    return LiveCatalogue(features, retriever, ItemEncoder(root / "models" / "item_tower" / "model.onnx"), coding)


def synced(cat: LiveCatalogue, store: MemoryStore, *changes: ItemChange):
    async def go():
        await store.upsert_items(changes)
        return await cat.sync(store)

    return asyncio.run(go())


def test_an_added_item_gets_the_next_index_its_category_and_a_vector_it_is_found_by(artifacts):
    cat, store = catalogue(artifacts), MemoryStore()
    view = synced(cat, store, ItemChange("new-1", {"category_id": 2, "deleted": False}))
    items = view.features.items
    assert view.version == 1 and len(items) == g.N_ITEMS + 1 and view.added == ("new-1",)
    assert items.ids.lookup(["new-1", "i5", "nope"]).tolist() == [g.N_ITEMS, 5, -1]
    assert items.ids.to_shop(np.array([g.N_ITEMS, 5])) == ["new-1", "i5"]
    assert items.category[g.N_ITEMS] == 2 and not items.blocked[g.N_ITEMS]
    # The tiny item tower puts an added item (id 0) on its category's vector: that query finds it first.
    query = normalise(g.category_table()[3][None, :])
    scores, found = view.index.search(query, 3)
    assert found[0, 0] == g.N_ITEMS and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert view.index.ntotal == g.N_ITEMS + 1
    # The models see it as the unknown item with its category; the export's items keep their ids.
    rows = din_inputs(np.array([1, g.N_ITEMS]), np.array([g.N_ITEMS, 4]), items, None, None)
    assert rows["cand_item_ids"].tolist() == [0, 5] and rows["cand_cat_ids"].tolist() == [3, 5]
    assert rows["hist_item_ids"][0].tolist() == [2, 0]


def test_out_of_stock_and_deleted_items_are_blocked_and_left_out_of_retrieval(artifacts):
    cat, store = catalogue(artifacts), MemoryStore()
    top = cat.view.index.search(g.item_table()[6][None, :], 1)[1][0, 0]
    assert top == 5  # item i5's own vector
    view = synced(cat, store, ItemChange("i5", {"in_stock": False}), ItemChange("i7", {"deleted": True}))
    assert view.features.items.blocked[[5, 7]].all() and len(view.features.items) == g.N_ITEMS
    _, found = view.index.search(g.item_table()[6][None, :], g.N_ITEMS, blocked=view.features.items.blocked)
    assert 5 not in found[0] and 7 not in found[0]
    view = synced(cat, store, ItemChange("i5", {"in_stock": True}))  # back in stock, i7 still deleted
    assert not view.features.items.blocked[5] and view.features.items.blocked[7]


def test_a_known_item_whose_category_changes_is_embedded_again_and_searched_only_in_the_delta(artifacts):
    cat, store = catalogue(artifacts), MemoryStore()
    view = synced(cat, store, ItemChange("i5", {"category_id": 1}), ItemChange("i6", {"in_stock": True}))
    assert view.features.items.category[5] == 1
    assert view.delta.ids.tolist() == [5]  # i6's stock did not move its vector
    assert isinstance(view.index, LiveIndex) and view.index.superseded[5] and view.index.superseded.sum() == 1
    want = normalise((g.item_table()[6] + g.category_table()[2])[None, :])
    scores, found = view.index.search(want, 2)
    assert found[0, 0] == 5 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert list(found[0]).count(5) == 1  # never twice: its old vector is out of the main search


def test_exclusions_apply_to_the_delta_too(artifacts):
    cat, store = catalogue(artifacts), MemoryStore()
    view = synced(cat, store, ItemChange("n1", {"category_id": 3}), ItemChange("n2", {"category_id": 3}))
    query = normalise(g.category_table()[4][None, :])
    _, found = view.index.search(query, 2)
    assert set(found[0].tolist()) == {g.N_ITEMS, g.N_ITEMS + 1}
    _, found = view.index.search(query, 2, exclude=np.array([g.N_ITEMS]))
    assert g.N_ITEMS not in found[0] and g.N_ITEMS + 1 in found[0]


def test_a_reload_replays_every_change_onto_the_new_export(artifacts):
    store = MemoryStore()
    first = catalogue(artifacts)
    synced(first, store, ItemChange("n1", {"category_id": 3}), ItemChange("i2", {"in_stock": False}))
    again = asyncio.run(catalogue(artifacts).sync(store))
    assert again.added == ("n1",) and again.features.items.blocked[2] and again.version == 2


def test_an_item_deleted_before_any_process_added_it_is_not_added(artifacts):
    cat, store = catalogue(artifacts), MemoryStore()
    view = synced(cat, store, ItemChange("n9", {"category_id": 1}), ItemChange("n9", {"deleted": True}))
    assert view.added == () and view.version == 2


def test_item_coding_maps_unseen_categories_and_brands_to_unknown_and_prices_to_the_exported_buckets():
    price = np.array([1.0, 2.0, 2.5, 7.0, 9.0, 30.0])
    bucket = np.array([0, 1, 1, 3, 3, 4])  # bucket 2 held no item
    coding = ItemCoding.from_npz(
        {
            "category": np.array([0, 1, 1, 2, 2, 2]),
            "category_vocab": np.array([10, 20, 30]),
            "brand": np.array([0, 0, 1, 1, 0, 1]),
            "price": price,
            "price_bucket": bucket,
        }
    )
    assert coding.category([20, 99, "x"]).tolist() == [1, -1, -1]
    assert coding.brand([1, 5]).tolist() == [1, -1]
    assert coding.price_bucket(price).tolist() == bucket.tolist()  # every exported item's bucket back
    assert coding.price_bucket(np.array([np.nan]))[0] == 2  # no price: the middle bucket
    assert _recovered_edges(np.ones(3), np.zeros(3, np.int64)) is None


def test_extended_ids_look_up_both_parts_and_keep_the_integer_rules():
    ids = ExtendedIds(IdMap(np.array([5, 3, 9])), np.array(["11", "4"]))
    assert len(ids) == 5 and ids.is_int
    assert ids.lookup([3, "11", 4, 12]).tolist() == [1, 3, 4, -1]
    assert ids.to_shop(np.array([4, 0])) == [4, 5]
    assert ids.malformed([3, "x1"]) == 1


def test_added_items_join_the_popular_order_where_a_full_sort_would_put_them(artifacts):
    cat, store = catalogue(artifacts), MemoryStore()
    view = synced(cat, store, *[ItemChange(f"n{i}", {"category_id": i % 3}) for i in range(3)])
    items = view.features.items
    assert (items.popular_order == np.argsort(-items.popularity, kind="stable")).all()
    assert items.popular_order[-3:].tolist() == [40, 41, 42]
