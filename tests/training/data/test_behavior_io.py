"""Loader for the shop's own behaviour files: formats, id mapping, and every error path."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from training.data.behavior_io import load_behavior
from training.data.errors import DataFileError

HEADER = "user_id,item_id,category_id,event_type,timestamp\n"
ROWS = [
    "u2,sku-b,shoes,click,2024-01-01T10:00:05",
    "u1,sku-a,hats,view,2024-01-01T09:00:00",
    "u2,sku-a,hats,view,2024-01-01T10:00:00",
    "u1,sku-c,shoes,buy,2024-01-02 09:00:00+01:00",
    "u1,sku-c,shoes,cart,2024-01-01T09:30:00",
]


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def _raises(path, *, line: int | None, column: str | None, match: str, **kw):
    """Load and check the DataFileError names file, line and column."""
    with pytest.raises(DataFileError, match=match) as info:
        load_behavior(path, **kw)
    err = info.value
    assert err.line == line and err.column == column
    message = str(err)
    assert message.startswith(str(path))
    if line is not None:
        assert f"line {line}" in message
    if column is not None:
        assert f"column '{column}'" in message
    return err


def test_documented_schema_with_string_ids_and_iso_times(tmp_path):
    log = load_behavior(_write(tmp_path, "events.csv", HEADER + "\n".join(ROWS) + "\n"))
    assert log.user_ids.tolist() == ["u1", "u2"] and log.catalogue.item_ids.tolist() == ["sku-a", "sku-b", "sku-c"]
    assert log.catalogue.category.tolist() == [0, 1, 1]  # hats < shoes
    assert log.user.tolist() == [0, 0, 0, 1, 1]  # sorted by (user, time)
    assert np.all(np.diff(log.timestamp[:3]) > 0)
    assert log.item.tolist() == [0, 2, 2, 0, 1]
    assert log.event.tolist() == [0, 2, 3, 0, 1]  # view, cart, buy (08:00 UTC), view, click
    assert log.timestamp[0] == int(pd.Timestamp("2024-01-01T09:00:00Z").timestamp())
    assert log.timestamp[2] == int(pd.Timestamp("2024-01-02T08:00:00Z").timestamp())
    assert log.catalogue.n_brands == 1 and np.all(log.catalogue.price == 1.0)  # defaults without an items file
    assert log.user_features is None


def test_integer_ids_map_in_sorted_order(tmp_path):
    text = HEADER + "30,7,2,click,1700000100\n10,5,1,view,1700000000\n30,5,1,view,1700000000\n"
    log = load_behavior(_write(tmp_path, "e.csv", text))
    assert log.user_ids.tolist() == [10, 30] and log.catalogue.item_ids.tolist() == [5, 7]
    assert log.user_ids.dtype == np.int64 and log.timestamp.tolist() == [1700000000, 1700000000, 1700000100]


TAOBAO = "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,fav,1511561733\n2,2268318,2520377,buy,1511572885\n"


@pytest.mark.parametrize("header", ["", "user_id,item_id,category_id,behavior_type,timestamp\n"])
def test_taobao_user_behavior_with_and_without_header(tmp_path, header):
    log = load_behavior(_write(tmp_path, "UserBehavior.csv", header + TAOBAO))
    assert log.event.tolist() == [0, 1, 3]  # pv -> view, fav -> click, buy -> buy
    assert log.user_ids.tolist() == [1, 2] and log.catalogue.item_ids.tolist() == [2268318, 2333346]
    assert log.catalogue.n_categories == 2 and log.timestamp[0] == 1511544070


def test_items_and_users_files(tmp_path, caplog):
    events = _write(tmp_path, "events.csv", HEADER + "\n".join(ROWS) + "\n")
    items = _write(
        tmp_path, "items.csv", "item_id,category_id,brand_id,price\nsku-c,shoes,acme,20.5\nsku-a,hats,zed,5\n"
        "sku-b,shoes,acme,7.25\nsku-z,socks,zed,1\n"
    )  # fmt: skip
    users = _write(tmp_path, "users.csv", "user_id,segment,region\nu2,student,3\nu9,pro,1\n")
    with caplog.at_level(logging.WARNING, logger="training.data.behavior_io"):
        log = load_behavior(events, items, users)
    cat = log.catalogue
    assert cat.item_ids.tolist() == ["sku-a", "sku-b", "sku-c", "sku-z"]  # items without events are kept
    assert cat.brand.tolist() == [1, 0, 0, 1] and cat.n_brands == 2
    np.testing.assert_allclose(cat.price, [5, 7.25, 20.5, 1])
    assert cat.category.tolist() == [0, 1, 1, 2] and cat.n_categories == 3
    assert cat.category_ids.tolist() == ["hats", "shoes", "socks"] and cat.brand_ids.tolist() == ["acme", "zed"]
    assert log.user_ids.tolist() == ["u1", "u2", "u9"]
    # segment: text codes in sorted order; region: integers kept as codes; u1 has no row -> extra code.
    assert log.user_features.tolist() == [[2, 4], [1, 3], [0, 1]]
    assert log.user_feature_cardinalities == (3, 5)
    assert "1 users lack a value for 'segment'" in caplog.text


def test_parquet_events_and_row_numbers(tmp_path):
    frame = pd.DataFrame(
        {"user_id": [1, 1, 2], "item_id": [5.0, 6.0, 7.5], "category_id": [1, 1, 2], "event_type": ["view"] * 3}
    )
    frame["timestamp"] = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"])
    good = frame.assign(item_id=[5, 6, 7])
    good.to_parquet(tmp_path / "good.parquet", index=False)
    log = load_behavior(tmp_path / "good.parquet")
    assert log.catalogue.item_ids.tolist() == [5, 6, 7]
    assert log.timestamp[1] - log.timestamp[0] == 86_400
    frame.to_parquet(tmp_path / "bad.parquet", index=False)
    _raises(tmp_path / "bad.parquet", line=3, column="item_id", match="wrong type")


# ------------------------------------------------------------------------------------- error paths


def test_error_missing_column(tmp_path):
    path = _write(tmp_path, "e.csv", "user_id,item_id,event_type,timestamp\n1,2,view,5\n")
    _raises(path, line=1, column="category_id", match="missing column 'category_id'")


def test_error_missing_event_type_column(tmp_path):
    path = _write(tmp_path, "e.csv", "user_id,item_id,category_id,timestamp\n1,2,3,5\n")
    _raises(path, line=1, column="event_type", match="missing column 'event_type'")


def test_error_wrong_type(tmp_path):
    path = _write(tmp_path, "e.csv", HEADER + "1,2,3,view,5\nbob,2,3,view,6\n")
    _raises(path, line=3, column="user_id", match="wrong type")


def test_error_unparsable_timestamp(tmp_path):
    path = _write(tmp_path, "e.csv", HEADER + "1,2,3,view,2024-01-01\n1,2,3,view,yesterday\n")
    _raises(path, line=3, column="timestamp", match="unparsable timestamp 'yesterday'")
    path = _write(tmp_path, "n.csv", HEADER + "1,2,3,view,1700000000\n1,2,3,view,2024-01-01\n")
    _raises(path, line=3, column="timestamp", match="unparsable timestamp")


def test_error_unknown_event_type(tmp_path):
    path = _write(tmp_path, "e.csv", HEADER + "1,2,3,view,5\n1,2,3,click,6\n1,2,3,purchase,7\n")
    _raises(path, line=4, column="event_type", match="unknown event type 'purchase'")
    taobao = _write(tmp_path, "t.csv", "1,2,3,pv,5\n1,2,3,like,6\n")
    _raises(taobao, line=2, column="event_type", match="unknown event type 'like'")


@pytest.mark.parametrize("text, line", [("", 1), (HEADER, 2)])
def test_error_empty_file(tmp_path, text, line):
    _raises(_write(tmp_path, "e.csv", text), line=line, column=None, match="empty file")


def test_error_item_with_two_categories(tmp_path):
    path = _write(tmp_path, "e.csv", HEADER + "1,2,3,view,5\n1,9,3,view,6\n2,2,4,click,7\n")
    err = _raises(path, line=4, column="category_id", match="two categories")
    assert "line 2" in str(err)  # where the first category was seen
    items = _write(tmp_path, "items.csv", "item_id,category_id\n2,4\n9,3\n")
    ok = _write(tmp_path, "ok.csv", HEADER + "1,2,3,view,5\n")
    _raises(ok, line=2, column="category_id", match="two categories", items_path=items)


def test_error_bad_items_file(tmp_path):
    events = _write(tmp_path, "e.csv", HEADER + "1,2,3,view,5\n")
    dup = _write(tmp_path, "items.csv", "item_id,category_id,price\n2,3,1.5\n4,3,2\n2,3,1.5\n")
    with pytest.raises(DataFileError, match="duplicate item_id") as info:
        load_behavior(events, dup)
    assert info.value.line == 4 and info.value.column == "item_id" and "items.csv" in str(info.value)
    price = _write(tmp_path, "items2.csv", "item_id,category_id,price\n2,3,cheap\n")
    with pytest.raises(DataFileError, match="wrong type") as info:
        load_behavior(events, price)
    assert info.value.line == 2 and info.value.column == "price"


def test_error_malformed_rows(tmp_path):
    _raises(_write(tmp_path, "e.csv", "1,2,3,view\n"), line=1, column=None, match="no header line and 4 columns")
    ragged = _write(tmp_path, "r.csv", HEADER + "1,2,3,view,5\n1,2,3,view,6,extra\n")
    _raises(ragged, line=3, column=None, match="malformed row")
    with pytest.raises(DataFileError, match="file not found"):
        load_behavior(tmp_path / "nope.csv")


# -------------------------------------------------------------------------------------- dirty rows


def test_empty_cells_are_dropped_with_a_count_or_fail_when_strict(tmp_path, caplog):
    path = _write(tmp_path, "e.csv", HEADER + "1,2,3,view,5\n1,,3,view,6\n\n2,4,3,click,7\n")
    with caplog.at_level(logging.WARNING, logger="training.data.behavior_io"):
        log = load_behavior(path)
    assert log.n_events == 2
    assert "dropped 2 of 4 rows with an empty cell (first at line 3, column 'item_id')" in caplog.text
    _raises(path, line=3, column="item_id", match="empty cell", strict=True)


def test_events_on_unknown_items_are_dropped_with_a_count_or_fail_when_strict(tmp_path, caplog):
    events = _write(tmp_path, "e.csv", HEADER + "1,2,3,view,5\n1,8,3,view,6\n1,8,3,click,7\n")
    items = _write(tmp_path, "items.csv", "item_id,category_id\n2,3\n")
    with caplog.at_level(logging.WARNING, logger="training.data.behavior_io"):
        log = load_behavior(events, items)
    assert log.n_events == 1 and "dropped 2 of 3 events on items absent from items.csv" in caplog.text
    _raises(events, line=3, column="item_id", match="not in items.csv", items_path=items, strict=True)
