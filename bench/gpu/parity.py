"""Export parity on a GPU execution provider: every model in the spec table, fp32 and fp16, against PyTorch.

The ONNX file is export's (model_repository/<name>/<latest>/model.onnx, artifacts/models/<name>/model.onnx)
with the checkpoint it came from; where either is missing (the dry run's bare tree) a tiny random model is
exported to a scratch folder, so the step still runs the same comparison. fp16 is the fp32 graph converted by
ONNX Runtime's own converter (inputs and outputs kept fp32), held to a looser tolerance: where it holds, the
model can be served in half precision.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bench.gpu.wheels import sha256
from export.models import EXPORTERS
from export.onnx_export import ParityError, check_parity, export_onnx, ort_session
from serving.contracts.model_specs import SPECS, ModelSpec
from training.checkpoint import load_checkpoint

FP16_ATOL, FP16_RTOL = 2e-2, 2e-2  # half precision's ~3 significant digits, through a few layers
BATCHES = (1, 3, 64)
# Throughput of the two models the GPU goals name: DIN rows at one large batch, BERT texts at batch 64.
RATE_BATCH = {"din": 1024, "intent_bert": 64}


def onnx_file(spec: ModelSpec, artifacts: Path, repository: Path) -> Path | None:
    """Export's file for the spec, or None."""
    if not spec.served_online:
        path = artifacts / "models" / spec.name / "model.onnx"
        return path if path.is_file() else None
    versions = sorted(
        (p for p in (repository / spec.name).glob("[0-9]*") if p.name.isdigit()), key=lambda p: int(p.name)
    )
    return next((v / "model.onnx" for v in reversed(versions) if (v / "model.onnx").is_file()), None)


def _model(
    spec: ModelSpec, artifacts: Path, repository: Path, exported: dict[str, Any], tmp: Path
) -> tuple[Any, dict[str, Any], Path, str]:
    """(PyTorch module, config, ONNX file, where they came from) for one spec."""
    exporter = EXPORTERS[spec.name]
    ckpt = artifacts / "checkpoints" / f"{spec.checkpoint}.pt"
    if not ckpt.is_file():
        module, config = exporter.tiny()
        export_onnx(module, spec, config, tmp / f"{spec.name}.onnx")
        return module, config, tmp / f"{spec.name}.onnx", "tiny random model"
    payload = load_checkpoint(ckpt)
    module, config = exporter.from_checkpoint(payload), payload["config"]
    path = onnx_file(spec, artifacts, repository)
    # Export's file only when the manifest says it came from this very checkpoint (else it would not match).
    if path is not None and exported.get(spec.name, {}).get("checkpoint_sha256") == sha256(ckpt):
        return module, config, path, "export"
    export_onnx(module, spec, config, tmp / f"{spec.name}.onnx")
    return module, config, tmp / f"{spec.name}.onnx", "checkpoint, exported here"


def to_fp16(src: Path, dest: Path) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dest))
    return dest


def rows_per_s(session: Any, spec: ModelSpec, config: dict, batch: int, seconds: float = 1.0) -> float:
    """Rows per second of `session` at `batch` (the longest sequence the model takes), after two warm-up calls."""
    rng = np.random.default_rng(0)
    arrays = spec.example_inputs(config, batch, rng, spec.max_length(config))
    names = spec.resolve(config).output_names
    for _ in range(2):
        session.run(names, arrays)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(names, arrays)
        calls += 1
    return batch * calls / (time.perf_counter() - t0)


def _case(
    module: Any,
    spec: ModelSpec,
    config: dict,
    path: Path,
    providers: Sequence[str],
    tol: tuple[float, float],
    batches: Sequence[int],
) -> dict[str, Any]:
    session = ort_session(path, providers)
    used = session.get_providers()[0]
    atol, rtol = tol
    checked = dataclasses.replace(spec, atol=atol, rtol=rtol)
    try:
        report = check_parity(module, checked, config, path, batches=batches, session=session)
        out = {"ok": True, "max_abs_err": report.max_abs_err, "provider": used, "atol": atol, "rtol": rtol}
        if spec.name in RATE_BATCH:
            out[f"rows_per_s_at_{RATE_BATCH[spec.name]}"] = rows_per_s(session, spec, config, RATE_BATCH[spec.name])
        return out
    except ParityError as exc:
        return {"ok": False, "error": str(exc)[:300], "provider": used, "atol": atol, "rtol": rtol}


def run(
    artifacts: Path, repository: Path, providers: Sequence[str], fp16: bool = True, batches: Sequence[int] = BATCHES
) -> list[dict[str, Any]]:
    """One row per spec: where the model came from and its fp32 (and fp16) parity on `providers`."""
    rows = []
    manifest = artifacts / "manifest.json"
    exported = json.loads(manifest.read_text()).get("models", {}) if manifest.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="gpu-parity-") as tmp:
        for name, spec in SPECS.items():
            if name not in EXPORTERS:
                continue
            module, config, path, source = _model(spec, artifacts, repository, exported, Path(tmp))
            row: dict[str, Any] = {
                "model": name,
                "source": source,
                "fp32": _case(module, spec, config, path, providers, (spec.atol, spec.rtol), batches),
            }
            if fp16:
                try:
                    half = to_fp16(path, Path(tmp) / f"{name}.fp16.onnx")
                    row["fp16"] = _case(module, spec, config, half, providers, (FP16_ATOL, FP16_RTOL), batches)
                except Exception as exc:  # the converter or the provider refuses the graph: say so, go on
                    row["fp16"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            rows.append(row)
    return rows
