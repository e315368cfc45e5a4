"""Tiny random models exported once per session (dynamo exporter, as in production) and shared by the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from export.models import EXPORTERS
from export.onnx_export import ExportResult, export_onnx
from export.pbtxt import write_config


@dataclass
class TinyExport:
    module: torch.nn.Module
    config: dict[str, Any]
    result: ExportResult
    repo: Path  # a model repository holding <name>/config.pbtxt and <name>/1/model.onnx


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory):
    """tiny_export(name) -> TinyExport, exporting each spec's tiny model at most once per session."""
    repo = tmp_path_factory.mktemp("model_repository")
    cache: dict[str, TinyExport] = {}

    def get(name: str) -> TinyExport:
        if name not in cache:
            module, config = EXPORTERS[name].tiny()
            spec = EXPORTERS[name].spec
            result = export_onnx(module, spec, config, repo / name / "1" / "model.onnx")
            write_config(spec, config, repo)
            cache[name] = TinyExport(module, config, result, repo)
        return cache[name]

    return get
