"""`python -m export`: checkpoints -> model_repository/ (ONNX + config.pbtxt) and artifacts/ (FAISS index,
feature tables, intent files, manifest.json, reports/export.json).

Per model whose checkpoint exists: rebuild from the checkpoint's config, export to a staging file,
onnx.checker + graph check, parity against PyTorch (the export stops loudly when it fails), then move
into model_repository/<model>/<version>/model.onnx and write its config.pbtxt, parsed back and checked
against the graph. A version is reused when the checkpoint is unchanged since the last export, else the
next number is taken; the newest `keep_versions` are kept (Triton serves the latest, the previous one is
there to roll back to). The item tower goes to artifacts/models/ (run offline, not served).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from export.intent_artifacts import intent_artifacts
from export.models import EXPORTERS
from export.onnx_export import check_parity, export_onnx, measure_latency, ort_session, preferred_providers
from export.pbtxt import check_config, write_config
from export.rec_artifacts import retrieval_artifacts, sales_artifacts
from export.run_state import (
    ExportArgs,
    ExportRun,
    file_key_of,
    manifest_roots,
    next_version,
    prune_versions,
    row,
)
from serving.contracts.model_specs import SPECS, ModelSpec
from serving.contracts.triton_config import parse_config
from serving.runtime.manifest import MANIFEST_NAME, key_path, resolve_roots, write_manifest
from training.common import progress
from training.report import format_table, write_report

__all__ = ["ExportArgs", "run_export"]

LATENCY_BATCHES = (1, 8, 64, 256)


def run_export(args: ExportArgs) -> dict[str, Any]:
    run = ExportRun(args)
    # A serving variant of a model (tcn_plans of tcn) is exported with it, so both carry the same checkpoint.
    wanted = [s for s in SPECS.values() if not args.models or {s.name, s.extra.get("exported_with")} & set(args.models)]
    todo = [s for s in wanted if (args.checkpoints / f"{s.checkpoint}.pt").is_file()]
    for s in wanted:
        if s not in todo:
            run.rows.append(row({"model": s.name, "status": f"skipped: no {args.checkpoints / s.checkpoint}.pt"}))
    for spec in progress(todo, desc="export", unit="model"):
        export_model(run, spec)
    if "intent_bert" in run.models:
        intent_artifacts(run)
    if "item_tower" in run.models:
        retrieval_artifacts(run)
    if "tcn" in run.models:
        sales_artifacts(run)
    report = _finish(run)
    return report


# ---------------------------------------------------------------------------------------------------------
# ONNX models


def export_model(run: ExportRun, spec: ModelSpec) -> None:
    args = run.args
    payload = run.payload(spec.checkpoint)
    exporter = EXPORTERS[spec.name]
    module = exporter.from_checkpoint(payload)
    config = payload["config"]
    staging = args.artifacts / ".staging" / spec.name / "model.onnx"
    t0 = time.perf_counter()
    result = export_onnx(module, spec, config, staging, args.opset, args.exporter)
    parity = check_parity(module, spec, config, staging)  # raises ParityError: nothing is moved into place

    if spec.served_online:
        version = next_version(run, spec.name, payload["_sha256"])
        dest = args.repo / spec.name / str(version) / "model.onnx"
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging.replace(dest)
        cfg_path = write_config(spec, config, args.repo, run.options)
        check_config(parse_config(cfg_path), dest, spec.resolve(config))
        prune_versions(args.repo / spec.name, args.keep_versions)
        run.files += [dest, cfg_path]
    else:
        version = 1
        dest = args.artifacts / "models" / spec.name / "model.onnx"
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging.replace(dest)
        cfg_path = None
        run.files.append(dest)
    shutil.rmtree(staging.parent, ignore_errors=True)

    latency = {}
    if args.latency:
        session = ort_session(dest, preferred_providers())
        batches = [b for b in LATENCY_BATCHES if b <= spec.max_batch_size]
        length = spec.extra.get("latency_length") or spec.max_length(config)
        latency = measure_latency(session, spec, config, batches, length=int(length) if length else None)
    size_mb = dest.stat().st_size / 2**20
    run.models[spec.name] = {
        "version": version,
        "file": str(dest),
        "config": str(cfg_path) if cfg_path else None,
        "served": spec.served_online,
        "checkpoint": str(payload["_path"]),
        "checkpoint_sha256": payload["_sha256"],
        "data_fingerprint": payload.get("data_fingerprint", ""),
        "exporter": result.exporter,
        "exporter_fallback_reason": result.fallback_reason,
        "opset": result.opset,
        "size_mb": round(size_mb, 3),
        "parity": parity.as_dict(),
        "latency_ms": latency,
        "latency_length": length if args.latency else None,
        "providers": preferred_providers(),
        "inputs": {t.name: [t.dtype, list(t.dims)] for t in spec.resolve(config).inputs},
        "outputs": {t.name: [t.dtype, list(t.dims)] for t in spec.resolve(config).outputs},
        "max_batch_size": spec.max_batch_size,
    }
    run.rows.append(
        row(
            {
                "model": spec.name,
                "status": "ok",
                "version": version,
                "exporter": result.exporter,
                "MB": round(size_mb, 2),
                "parity max err": f"{parity.max_abs_err:.2e}",
                "atol": spec.atol,
                "p50 ms b=1": latency.get("1", {}).get("p50_ms", ""),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


# ---------------------------------------------------------------------------------------------------------
# Manifest and report


def _referenced_keys(value: Any, known: Mapping[str, Any]) -> set[str]:
    """Manifest file keys mentioned anywhere in a (nested) section."""
    if isinstance(value, str):
        return {value} if value in known else set()
    if isinstance(value, Mapping):
        return set().union(*(_referenced_keys(v, known) for v in value.values())) if value else set()
    return set()


def _carry_over(run: ExportRun, models: dict[str, Any]) -> list[Path]:
    """Keep what an earlier export wrote and this run did not redo (e.g. `--models tcn` keeps the others),
    so the manifest always describes the whole served set. Entries whose files are gone are dropped."""
    prev = run.previous
    if not prev:
        return []
    roots = resolve_roots(run.args.artifacts / MANIFEST_NAME, manifest_roots(run.args))
    known = prev.get("files", {})

    def present(keys: set[str]) -> bool:
        return all(key_path(k, roots).is_file() for k in keys)

    carried: set[str] = set()
    for name, entry in prev.get("models", {}).items():
        keys = _referenced_keys(entry, known)
        if name not in models and keys and present(keys):
            models[name] = entry
            carried |= keys
    for section, value in prev.items():
        if section in ("format", "created", "roots", "files", "models"):
            continue
        keys = _referenced_keys(value, known)
        if section == "data" and isinstance(value, Mapping):
            run.sections["data"] = {**value, **run.sections.get("data", {})}
        elif section not in run.sections and present(keys):
            run.sections[section] = value
            carried |= keys
    return [key_path(k, roots) for k in sorted(carried)]


def _environment() -> dict[str, Any]:
    """What the latency figures were measured on (README rule: numbers come with machine and versions)."""
    import faiss
    import onnx
    import onnxruntime
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "onnxruntime": onnxruntime.__version__,
        "providers": preferred_providers(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "faiss": faiss.__version__,
    }


def _finish(run: ExportRun) -> dict[str, Any]:
    args = run.args
    models = {
        name: {
            **{k: v for k, v in m.items() if k not in ("latency_ms", "parity", "evaluation")},
            "file": file_key_of(run, Path(m["file"])),
            "config": file_key_of(run, Path(m["config"])) if m.get("config") else None,
        }
        for name, m in run.models.items()
    }
    for m in models.values():
        if m["config"] is None:
            del m["config"]
    intent_fp = run.models.get("intent_bert", {}).get("data_fingerprint")
    if intent_fp:
        run.sections.setdefault("data", {})["intent"] = intent_fp
    shutil.rmtree(args.artifacts / ".staging", ignore_errors=True)
    if run.files:
        files = run.files + _carry_over(run, models)
        write_manifest(args.artifacts / MANIFEST_NAME, files, {"models": models, **run.sections}, manifest_roots(args))
    report = {
        "models": run.models,
        "retrieval": run.sections.get("retrieval"),
        "skipped": [r for r in run.rows if r["status"] != "ok"],
        "options": {
            "gpu_config": args.gpu_config,
            "accelerator": args.accelerator,
            "opset": args.opset,
            "exporter": args.exporter,
            "index": args.index,
            "index_memory_mb": args.index_memory_mb,
        },
        "table": format_table(run.rows, floatfmt="{:.4g}") if run.rows else "",
        "command": args.command,
        "environment": _environment(),
    }
    write_report(args.artifacts, "export", report)
    return report
