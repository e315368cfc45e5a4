"""The forecast capability's registry entry: its consistency check runs at start-up and on every reload
(check_artifacts loops over the registry), so a TCN whose input layout differs from the stored sales is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from serving.forecast.capability import CAPABILITY, check
from serving.runtime.backends.base import ModelInfo, TensorInfo
from serving.runtime.manifest import ManifestError
from serving.runtime.registry import Artifacts, check_artifacts
from serving.runtime.settings import Settings


def _tcn(n_past: int, context: int) -> ModelInfo:
    inputs = (
        TensorInfo("past_features", "float32", (n_past, context)),
        TensorInfo("future_features", "float32", (n_past - 2, 28)),
    )
    return ModelInfo("tcn", 2, inputs, (TensorInfo("quantiles", "float32", (28, 3)),), max_batch_size=8)


# Only the feature layout is read by the check; a namespace stands in for StoredSales' spec.
SALES = SimpleNamespace(spec=SimpleNamespace(n_past=12, context_days=64, n_future=10, horizon=28))


def test_matching_tcn_passes_and_a_different_layout_is_named() -> None:
    settings = Settings()
    assert check({"forecast": SALES}, {"tcn": _tcn(12, 64)}, settings) == []
    problems = check({"forecast": SALES}, {"tcn": _tcn(12, 128)}, settings)
    assert problems == ["forecast features do not fit the TCN: past_features (12, 128) != (12, 64)"]


def test_registry_check_raises_for_the_new_tcn_on_reload() -> None:
    with pytest.raises(ManifestError, match="past_features"):
        check_artifacts([CAPABILITY], Artifacts({"forecast": SALES}), {"tcn": _tcn(12, 128)}, Settings())


def test_missing_parts_are_not_checked() -> None:
    assert check({}, {"tcn": _tcn(12, 128)}, Settings()) == []
