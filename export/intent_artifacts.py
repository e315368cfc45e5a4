"""Intent extras: labels and tokenizer for the gateway, the raw-text ensemble for Triton, the int8 model.

intent/intent.json + intent/tokenizer.json (what serving/intent/codec.py reads); model_repository/
intent_tokenizer (Python backend, export/triton_tokenizer.py) and intent_text (ensemble: text ->
tokenizer -> intent_bert); intent_bert_int8 (dynamic int8, KIND_CPU), with its BANKING77 test accuracy
and CPU latency against the fp32 model in the report.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from export.onnx_export import measure_latency, ort_session, quantize_int8
from export.pbtxt import check_config, write_config, write_message
from export.run_state import ExportRun, file_key_of, next_version, prune_versions, row
from serving.contracts.model_specs import SPECS
from serving.contracts.triton_config import (
    ENSEMBLE_NAME,
    TOKENIZER_NAME,
    build_ensemble_config,
    build_tokenizer_config,
    check_ensemble,
    parse_config,
)
from serving.runtime.manifest import sha256_file
from training.common import progress

INT8_NAME = "intent_bert_int8"
TOKENIZER_SOURCE = Path(__file__).with_name("triton_tokenizer.py")


def intent_artifacts(run: ExportRun) -> None:
    from training.data.intents import encoder_dir

    args, info = run.args, run.models["intent_bert"]
    payload = run.payload(SPECS["intent_bert"].checkpoint)
    extra = payload.get("extra") or {}
    folder = args.artifacts / "intent"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = folder / "tokenizer.json"
    shutil.copyfile(encoder_dir() / "tokenizer.json", tokenizer)
    want = extra.get("tokenizer_sha256")
    if want and sha256_file(tokenizer) != want:
        raise ValueError(f"{tokenizer}: not the tokenizer the intent model was trained with (sha256 differs)")
    labels = folder / "intent.json"
    body = {k: extra.get(k) for k in ("labels", "temperature", "threshold", "max_len", "tokenizer_sha256")}
    labels.write_text(json.dumps(body, indent=1) + "\n")
    run.files += [tokenizer, labels]
    run.sections["intent"] = {
        "metadata": file_key_of(run, labels),
        "tokenizer": file_key_of(run, tokenizer),
        "n_labels": len(body["labels"] or []),
    }

    _raw_text_models(run, tokenizer, int(payload["config"]["max_len"]))
    if args.int8:
        _int8_model(run, payload, info)


def _raw_text_models(run: ExportRun, tokenizer: Path, max_len: int) -> None:
    """Python-backend tokenizer + ensemble, so Triton clients can send raw text to the intent model."""
    args = run.args
    bert = SPECS["intent_bert"]
    source_sha = sha256_file(tokenizer) + sha256_file(TOKENIZER_SOURCE)  # either changing makes a new version
    version = next_version(run, TOKENIZER_NAME, source_sha)
    folder = args.repo / TOKENIZER_NAME / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TOKENIZER_SOURCE, folder / "model.py")
    shutil.copyfile(tokenizer, folder / "tokenizer.json")
    tok_cfg = write_message(build_tokenizer_config(max_len, bert.max_batch_size, run.options), args.repo)
    (args.repo / ENSEMBLE_NAME / "1").mkdir(parents=True, exist_ok=True)  # Triton wants a version folder
    resolved = bert.resolve(run.payload(bert.checkpoint)["config"])
    ens_cfg = write_message(build_ensemble_config(resolved), args.repo)
    check_ensemble(parse_config(ens_cfg), args.repo)
    prune_versions(args.repo / TOKENIZER_NAME, args.keep_versions)
    run.files += [folder / "model.py", folder / "tokenizer.json", tok_cfg, ens_cfg]
    run.models[TOKENIZER_NAME] = {
        "version": version,
        "file": str(folder / "model.py"),
        "config": str(tok_cfg),
        "served": True,
        "backend": "python",
        "checkpoint_sha256": source_sha,
    }
    run.models[ENSEMBLE_NAME] = {
        "version": 1,
        "file": str(ens_cfg),
        "config": str(ens_cfg),
        "served": True,
        "platform": "ensemble",
        "steps": [TOKENIZER_NAME, bert.name],
    }
    run.rows.append(row({"model": f"{TOKENIZER_NAME} + {ENSEMBLE_NAME}", "status": "ok", "version": version}))


def _int8_model(run: ExportRun, payload: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    args = run.args
    spec = replace(SPECS["intent_bert"], name=INT8_NAME)
    version = next_version(run, INT8_NAME, info["checkpoint_sha256"])
    dest = quantize_int8(info["file"], args.repo / INT8_NAME / str(version) / "model.onnx")
    # Dynamic int8 (MatMulInteger) is a CPU speed-up; CUDA/TensorRT would run it slower than the fp32 model.
    cpu = replace(run.options, gpu=False, accelerator="none")
    cfg_path = write_config(spec, payload["config"], args.repo, cpu)
    check_config(parse_config(cfg_path), dest, spec.resolve(payload["config"]))
    prune_versions(args.repo / INT8_NAME, args.keep_versions)
    run.files += [dest, cfg_path]
    evaluation = _evaluate_int8(Path(info["file"]), dest, payload)
    run.models[INT8_NAME] = {
        **{k: info[k] for k in ("checkpoint", "checkpoint_sha256", "data_fingerprint", "inputs", "outputs")},
        "max_batch_size": spec.max_batch_size,
        "version": version,
        "file": str(dest),
        "config": str(cfg_path),
        "served": True,
        "quantized_from": "intent_bert",
        "size_mb": round(dest.stat().st_size / 2**20, 3),
        "evaluation": evaluation,
    }
    run.rows.append(
        row(
            {
                "model": INT8_NAME,
                "status": "ok",
                "version": version,
                "exporter": "quantize_dynamic",
                "MB": round(dest.stat().st_size / 2**20, 2),
                "parity max err": f"acc {evaluation['int8_accuracy']:.4f} vs {evaluation['fp32_accuracy']:.4f}",
                "p50 ms b=1": evaluation["int8_latency_ms"]["1"]["p50_ms"],
            }
        )
    )


def _evaluate_int8(fp32: Path, int8: Path, payload: Mapping[str, Any]) -> dict[str, Any]:
    """BANKING77 test accuracy of both models (ONNX Runtime, CPU) and their latency at batch 1 and 32."""
    from training.data.intents import load_banking77, load_tokenizer, tokenize

    config = payload["config"]
    test = load_banking77("test")
    ids, mask = tokenize(load_tokenizer(int(config["max_len"])), test.texts)
    order = np.argsort(mask.sum(1), kind="stable")  # similar lengths together: less padding per batch
    out: dict[str, Any] = {"test_rows": len(test), "data": "BANKING77 test"}
    for tag, path in (("fp32", fp32), ("int8", int8)):
        session = ort_session(path)
        pred = np.empty(len(test), dtype=np.int64)
        for s in progress(range(0, len(order), 64), desc=f"intent {tag} eval", leave=False):
            rows = order[s : s + 64]
            width = int(mask[rows].sum(1).max())
            logits = session.run(["logits"], {"input_ids": ids[rows, :width], "attention_mask": mask[rows, :width]})[0]
            pred[rows] = logits.argmax(1)
        out[f"{tag}_accuracy"] = float((pred == test.label).mean())
        out[f"{tag}_latency_ms"] = measure_latency(session, SPECS["intent_bert"], config, (1, 32), length=32)
    out["accuracy_change"] = out["int8_accuracy"] - out["fp32_accuracy"]
    out["speedup_batch_1"] = out["fp32_latency_ms"]["1"]["p50_ms"] / out["int8_latency_ms"]["1"]["p50_ms"]
    out["speedup_batch_32"] = out["fp32_latency_ms"]["32"]["p50_ms"] / out["int8_latency_ms"]["32"]["p50_ms"]
    return out
