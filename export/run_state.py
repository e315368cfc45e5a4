"""State shared by the steps of one `python -m export` run: arguments, what was written, versions.

The steps (export/pipeline.py for the ONNX models, export/intent_artifacts.py, export/rec_artifacts.py)
append the files they write to `ExportRun.files` (hashed into the manifest), their manifest entries to
`models` / `sections`, and a row each to the summary table.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.onnx_export import DEFAULT_OPSET
from export.retrieval import DEFAULT_MEMORY_MB
from serving.contracts.triton_config import TritonOptions
from serving.runtime.manifest import MANIFEST_NAME, file_key, load_manifest, resolve_roots, sha256_file
from training.checkpoint import load_checkpoint


@dataclass
class ExportArgs:
    checkpoints: Path = Path("artifacts/checkpoints")
    repo: Path = Path("model_repository")
    artifacts: Path = Path("artifacts")
    gpu_config: bool = True  # KIND_GPU instance groups (NGC image); False = KIND_CPU
    accelerator: str = "none"  # none | cuda | tensorrt
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"
    data: Path | None = None  # behaviour data directory used in training; None = generate (profile, seed)
    profile: str | None = None  # None: the profile the checkpoint (or its training report) records, else quick
    seed: int = 0
    sales_data: Path | None = None  # sales data directory used in training; None = generate
    sales_profile: str | None = None  # None: the profile the TCN checkpoint records
    intent_data: Path | None = None  # folder with the intent model's test.csv; None = what its checkpoint records
    index: str = "auto"  # FAISS index kind
    index_memory_mb: float = DEFAULT_MEMORY_MB  # the index must fit this (auto picks the best kind that does)
    recall_k: int = 200  # candidates the gateway retrieves
    int8: bool = True
    latency: bool = True
    models: tuple[str, ...] = ()  # subset of SPECS; empty = every spec with a checkpoint
    keep_versions: int = 2
    command: str = ""  # the command line, recorded in the report next to the figures


COLUMNS = ("model", "status", "version", "exporter", "MB", "parity max err", "atol", "p50 ms b=1", "seconds")


def row(values: Mapping[str, Any]) -> dict[str, Any]:
    """A summary-table row with every column (format_table takes its columns from the first row)."""
    return {c: values.get(c, "") for c in COLUMNS}


class ExportRun:
    """State of one export run: what was written, for the manifest and the report."""

    def __init__(self, args: ExportArgs):
        self.args = args
        self.files: list[Path] = []
        self.models: dict[str, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.sections: dict[str, Any] = {}
        self.payloads: dict[str, dict[str, Any]] = {}
        manifest = args.artifacts / MANIFEST_NAME
        self.previous = load_manifest(manifest) if manifest.is_file() else {}
        self.options = TritonOptions(gpu=args.gpu_config, accelerator=args.accelerator)

    def payload(self, checkpoint: str) -> dict[str, Any]:
        if checkpoint not in self.payloads:
            path = self.args.checkpoints / f"{checkpoint}.pt"
            self.payloads[checkpoint] = {**load_checkpoint(path), "_path": path, "_sha256": sha256_file(path)}
        return self.payloads[checkpoint]


def file_key_of(run: ExportRun, path: Path) -> str:
    """The manifest's name for a written file: "<root>/<path inside the root>"."""
    return file_key(path, resolve_roots(run.args.artifacts / MANIFEST_NAME, manifest_roots(run.args)))


def manifest_roots(args: ExportArgs) -> dict[str, str]:
    """Manifest roots relative to the manifest's folder (artifacts/), for the repository wherever it is."""
    return {"artifacts": ".", "model_repository": os.path.relpath(args.repo.resolve(), args.artifacts.resolve())}


def next_version(run: ExportRun, name: str, checkpoint_sha: str) -> int:
    """The version a model is written as: the previous export's when its source (checkpoint) is unchanged,
    else the next number, so a gateway or Triton can load it beside the old one and switch over."""
    folder = run.args.repo / name
    existing = sorted(int(p.name) for p in folder.glob("[0-9]*") if p.is_dir() and p.name.isdigit())
    prev = run.previous.get("models", {}).get(name, {})
    if prev.get("checkpoint_sha256") == checkpoint_sha and prev.get("version") in existing:
        return int(prev["version"])
    return existing[-1] + 1 if existing else 1


def prune_versions(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` numbered version folders (the previous one stays for a roll-back)."""
    versions = sorted((p for p in folder.glob("[0-9]*") if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    for old in versions[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
