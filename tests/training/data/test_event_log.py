"""The gateway's event log (serving/runtime/event_log.py) read by the behaviour loader: the folder of rotated
JSONL files of several processes -> `BehaviorLog`, with the catalogue from an items file."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from serving.runtime.event_log import EventLog
from training.data.behavior import load_dir
from training.data.behavior_io import load_behavior
from training.data.errors import DataFileError
from training.data.schema import EVENT_TYPES

ITEMS = "item_id,category_id,brand_id,price\nsku-a,hats,b1,9.5\nsku-b,shoes,b2,30\nsku-c,shoes,b1,45\n"


def write_log(folder, records_per_process: list[list[dict]], max_bytes: int = 4096) -> None:
    async def run() -> None:
        for records in records_per_process:  # one EventLog per gateway process, each with its own files
            log = EventLog(folder, max_bytes=max_bytes)
            log._stem = f"events-20260101T000000Z-host-{id(log)}"  # two logs in one test process: distinct names
            log.write(records)
            await log.close()

    asyncio.run(run())


def ev(user, item, kind, ts, **kw) -> dict:
    return {"user_id": user, "item_id": item, "event_type": kind, "timestamp": ts, **kw}


def test_a_written_log_loads_into_the_behaviour_schema(tmp_path, caplog):
    a = [ev("u2", "sku-b", "click", 1_700_000_005.5, request_id="r1"), ev("u1", "sku-a", "view", 1_700_000_000)]
    b = [ev("u1", "sku-c", "buy", 1_700_000_900), ev("u1", "sku-c", "cart", 1_700_000_300)]
    b += [ev("u2", "sku-a", "skip", 1_700_000_001), ev("u3", "added-today", "click", 1_700_000_002)]
    write_log(tmp_path, [a, b])
    (tmp_path / "items.csv").write_text(ITEMS)
    with caplog.at_level(logging.WARNING, logger="training.data.behavior_io"):
        log, oracle = load_dir(tmp_path)
    assert oracle is None and log.n_events == 5  # the event on an item the catalogue lacks is dropped, counted
    assert "dropped 1 of 6 events on items absent from items.csv" in caplog.text
    assert log.user_ids.tolist() == ["u1", "u2"] and log.catalogue.item_ids.tolist() == ["sku-a", "sku-b", "sku-c"]
    events = [
        (int(u), int(i), EVENT_TYPES[e], int(t))
        for u, i, e, t in zip(log.user, log.item, log.event, log.timestamp, strict=True)
    ]
    assert events == [
        (0, 0, "view", 1_700_000_000),
        (0, 2, "cart", 1_700_000_300),
        (0, 2, "buy", 1_700_000_900),
        (1, 0, "view", 1_700_000_001),  # a skip is a view to training
        (1, 1, "click", 1_700_000_005),
    ]
    assert log.category.tolist() == [0, 1, 1, 0, 1] and log.catalogue.n_brands == 2  # categories from items.csv
    assert np.allclose(log.catalogue.price, [9.5, 30, 45])


def test_a_log_without_a_catalogue_says_how_to_give_one_and_bad_lines_name_file_and_line(tmp_path, caplog):
    write_log(tmp_path, [[ev(1, 10, "click", 1.0), ev(2, 11, "view", 2.0)]])
    with pytest.raises(DataFileError, match="without it, give the catalogue as an items file"):
        load_dir(tmp_path)
    (tmp_path / "items.csv").write_text("item_id,category_id\n10,1\n11,2\n")
    (path,) = sorted(tmp_path.glob("events-*.jsonl"))
    with path.open("a") as f:
        f.write('{"user_id": 3, "item_id": 10, "event_type": "like", "timestamp": 3}\n{"user_id": 4, "item_')
    with pytest.raises(DataFileError, match="unknown event type 'like'") as err:
        load_behavior(tmp_path, tmp_path / "items.csv")
    assert err.value.path == str(path) and err.value.line == 3
    with pytest.raises(DataFileError, match="not a JSON object") as err:
        load_behavior(path, tmp_path / "items.csv", strict=True)
    assert err.value.line == 4
    path.write_text(path.read_text().replace('"like"', '"buy"'))
    with caplog.at_level(logging.WARNING, logger="training.data.behavior_io"):
        log = load_behavior(path, tmp_path / "items.csv")  # one file works too; the cut last line is dropped
    assert log.n_events == 3 and "dropped 1 lines that are not JSON objects (first at line 4)" in caplog.text
    assert log.user_ids.tolist() == [1, 2, 3] and log.catalogue.item_ids.tolist() == [10, 11]


@pytest.mark.slow
def test_two_tower_retrains_on_a_gateway_event_log(tmp_path):
    """`python -m training train two_tower --data <log dir>`: the generator's events as the gateway logs them
    (no category_id; skips among the views), the catalogue beside them."""
    from training.__main__ import main
    from training.data import behavior

    source, _ = behavior.generate(behavior.PROFILES["tiny"], seed=0)
    kinds = np.array((*EVENT_TYPES, "skip"))[
        np.where(source.event == 0, np.arange(source.n_events) % 2 * 4, source.event)
    ]
    records = [
        ev(int(source.user_ids[u]), int(source.catalogue.item_ids[i]), str(k), float(t))
        for u, i, k, t in zip(source.user, source.item, kinds, source.timestamp, strict=True)
    ]
    write_log(tmp_path / "log", [records[::2], records[1::2]], max_bytes=1 << 18)
    cat = source.catalogue
    items = "item_id,category_id\n" + "".join(f"{i},{c}\n" for i, c in zip(cat.item_ids, cat.category, strict=True))
    (tmp_path / "log" / "items.csv").write_text(items)
    args = ["--profile", "tiny", "--data", str(tmp_path / "log"), "--out", str(tmp_path / "out"), "--max-epochs", "1"]
    assert main(["train", "two_tower", *args]) == 0
    assert (tmp_path / "out" / "checkpoints" / "two_tower.pt").is_file()
