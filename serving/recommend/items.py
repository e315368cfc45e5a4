"""/v1/items and /v1/items/delete as transport-free async functions: the catalogue, changed online.

A write goes to the online store first (shared by every gateway on one Redis), then this process applies it
(serving/recommend/catalogue.py) before answering, so the next /v1/recommend here sees it; other processes
see it on their next recommendation for any user (their user read brings the catalogue version).
Whether an item is new is decided on the catalogue with every write so far applied: a new item needs a
category (422 naming the field otherwise). A store that fails answers 503 and nothing is applied.
"""

from __future__ import annotations

from serving.contracts.errors import InvalidInput
from serving.recommend.catalogue import LiveCatalogue
from serving.recommend.item_schemas import DeleteItemsRequest, ItemsRequest, ItemsResponse
from serving.runtime.online_store import ItemChange, StoreUnavailable
from serving.runtime.runtime import Runtime


async def _write(rt: Runtime, catalogue: LiveCatalogue, changes: list[ItemChange]) -> int:
    try:
        version = await rt.online.upsert_items(changes)
    except StoreUnavailable:
        rt.metrics.online_store_errors.labels("items").inc()
        raise
    await catalogue.sync(rt.online, version)
    return version


async def upsert(rt: Runtime, req: ItemsRequest) -> ItemsResponse:
    catalogue: LiveCatalogue = rt.artifacts.need("catalogue")
    view = await catalogue.sync(rt.online)  # the latest catalogue decides what is new
    ids = [item.item_id for item in req.items]
    bad = view.features.items.ids.malformed(ids)
    if bad is not None:
        raise InvalidInput(["items", bad, "item_id"], f"malformed id {ids[bad]!r}: this catalogue's ids are integers")
    index = view.features.items.ids.lookup(ids)
    seen: set[str] = set()
    added = 0
    for pos, (item, i) in enumerate(zip(req.items, index.tolist(), strict=True)):
        key = str(item.item_id)
        if i < 0 and key not in seen:
            if item.category_id is None:
                raise InvalidInput(
                    ["items", pos, "category_id"], "required for an item the catalogue does not have", "missing"
                )
            added += 1
        seen.add(key)
    changes = [
        ItemChange(str(item.item_id), item.model_dump(exclude={"item_id"}, exclude_none=True) | {"deleted": False})
        for item in req.items
    ]
    version = await _write(rt, catalogue, changes)
    rt.metrics.catalogue_writes.labels("added").inc(added)
    rt.metrics.catalogue_writes.labels("updated").inc(len(changes) - added)
    return ItemsResponse(
        accepted=len(changes),
        added=added,
        catalogue_version=version,
        catalogue_items=len(catalogue.view.features.items),
    )


async def delete(rt: Runtime, req: DeleteItemsRequest) -> ItemsResponse:
    catalogue: LiveCatalogue = rt.artifacts.need("catalogue")
    view = await catalogue.sync(rt.online)
    items = view.features.items.ids
    bad = items.malformed(req.item_ids)
    if bad is not None:
        raise InvalidInput(["item_ids", bad], f"malformed id {req.item_ids[bad]!r}: this catalogue's ids are integers")
    known = items.lookup(req.item_ids) >= 0
    changes = [ItemChange(str(i), {"deleted": True}) for i, k in zip(req.item_ids, known.tolist(), strict=True) if k]
    version = await _write(rt, catalogue, changes) if changes else view.version
    rt.metrics.catalogue_writes.labels("deleted").inc(len(changes))
    return ItemsResponse(
        accepted=len(changes),
        unknown=len(req.item_ids) - len(changes),
        catalogue_version=version,
        catalogue_items=len(catalogue.view.features.items),
    )
