"""Every data fingerprint recipe, one function per kind of data, written once.

Training stores these next to what it writes (a checkpoint's `data_fingerprint`, a data folder's
meta.json); export recomputes them on the data it is given and refuses data other than the training
data. Both sides call the functions here, so the recipes cannot drift apart. The hash itself
(sha256 over contents, dtypes and shapes, 16 hex digits) is `training.common.fingerprint`.

- `behavior_fingerprint`: the events (user, item, event, timestamp); two-tower and DIN checkpoints,
  checked by export.
- `behavior_dataset_fingerprint`: the events and the item catalogue; a behaviour folder's meta.json.
- `sales_fingerprint`: units, price, promo and calendar events; the TCN checkpoint, checked by export.
- `sales_units_fingerprint`: the units grid; a sales folder's meta.json (does expected.npy still fit?).
- `intent_fingerprint`: train and test utterances and labels; the intent checkpoint and report, copied
  into the export manifest.
"""

from __future__ import annotations

import numpy as np

from training.common import fingerprint
from training.data.schema import BehaviorLog, IntentDataset, SalesPanel


def behavior_fingerprint(log: BehaviorLog) -> str:
    """The behaviour data a recommendation model was trained on: its events, in log order."""
    return fingerprint(log.user, log.item, log.event, log.timestamp)


def behavior_dataset_fingerprint(log: BehaviorLog) -> str:
    """A whole behaviour dataset as a folder holds it: the events plus each item's category, brand and price."""
    cat = log.catalogue
    return fingerprint(log.user, log.item, log.event, log.timestamp, cat.category, cat.brand, cat.price)


def sales_fingerprint(panel: SalesPanel) -> str:
    """The sales data a forecaster was trained on: units and the covariates it reads."""
    return fingerprint(panel.units, panel.price, panel.promo, panel.events)


def sales_units_fingerprint(panel: SalesPanel) -> str:
    """The units grid alone: a generated folder's ground truth (expected.npy) is aligned with exactly it."""
    return fingerprint(panel.units)


def intent_fingerprint(train: IntentDataset, test: IntentDataset) -> str:
    """The utterances and labels of an intent model's train and test sets."""
    return fingerprint(np.array(train.texts, dtype=object), train.label, np.array(test.texts, dtype=object), test.label)
