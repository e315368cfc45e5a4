"""Bodies of /v1/items (upsert) and /v1/items/delete: the catalogue, changed online."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

from serving.contracts.schemas import ShopId, StrictRequest

MAX_ITEMS = 1000  # per request (HTTP 422 beyond)
MAX_PRICE = 1e9

Price = Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)]


class ItemUpdate(StrictRequest):
    """One item's fields; an update of a known item may carry only what changes (absent or null: unchanged)."""

    item_id: ShopId
    category_id: ShopId | None = Field(
        None,
        description="required for an item the catalogue does not have; a category the models never saw is "
        "their unknown category",
    )
    brand_id: ShopId | None = Field(None, description="a brand the models never saw is their unknown brand")
    price: Price | None = None
    in_stock: Annotated[bool, Strict()] | None = Field(None, description="false: left out of every list at once")


class ItemsRequest(StrictRequest):
    items: list[ItemUpdate] = Field(min_length=1, max_length=MAX_ITEMS, description="applied in order")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"items": [{"item_id": 190000001, "category_id": 12, "brand_id": 3, "price": 19.9}]},
                {"items": [{"item_id": 100000003, "in_stock": False}]},
            ]
        },
    )


class DeleteItemsRequest(StrictRequest):
    item_ids: list[ShopId] = Field(min_length=1, max_length=MAX_ITEMS, description="taken out of every list")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"item_ids": [100000003]}]})


class ItemsResponse(BaseModel):
    accepted: int = Field(description="item writes taken in (stored, and visible to the next recommendation)")
    added: int = Field(0, description="of them, on items the catalogue did not have")
    unknown: int = Field(0, description="deletes of items the catalogue does not have (nothing to do)")
    catalogue_version: int = Field(description="writes to the catalogue so far, over every gateway sharing the store")
    catalogue_items: int = Field(description="items in the catalogue now (in stock or not)")
