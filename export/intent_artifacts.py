"""Intent extras: labels and tokenizer for the gateway, the raw-text ensemble for Triton, the int8 model.

intent/intent.json + intent/tokenizer.json (what serving/intent/codec.py reads), and intent/ood.npz
when the out-of-scope rule needs fitted statistics (Mahalanobis means and whitening); model_repository/
intent_tokenizer (Python backend, export/triton_tokenizer.py) and intent_text (ensemble: text ->
tokenizer -> intent_bert); intent_bert_int8 (dynamic int8, KIND_CPU), with its accuracy on the model's
own test set and CPU latency against the fp32 model in the report (export/intent_eval.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from export.intent_eval import evaluate_int8, intent_test_data
from export.onnx_export import quantize_int8
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
    if extra.get("ood"):
        body["ood"] = _ood_rule(run, extra["ood"], folder)
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


def _ood_rule(run: ExportRun, ood: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """intent.json's "ood" entry; Mahalanobis statistics go to ood.npz beside it (hashed in the manifest)."""
    rule = {k: ood[k] for k in ("score", "threshold", "target_in_scope_handoff") if k in ood}
    if ood.get("score") == "mahalanobis":
        stats = folder / "ood.npz"
        arrays = {k: np.asarray(ood[k], dtype=np.float32) for k in ("means", "whitening")}
        np.savez(stats, **arrays)
        run.files.append(stats)
        rule["statistics"] = stats.name
    return rule


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
    test, data = intent_test_data(payload, args.intent_data)  # before quantising: a data mismatch stops here
    dest = quantize_int8(info["file"], args.repo / INT8_NAME / str(version) / "model.onnx")
    # Dynamic int8 (MatMulInteger) is a CPU speed-up; CUDA/TensorRT would run it slower than the fp32 model.
    cpu = replace(run.options, gpu=False, accelerator="none")
    cfg_path = write_config(spec, payload["config"], args.repo, cpu)
    check_config(parse_config(cfg_path), dest, spec.resolve(payload["config"]))
    prune_versions(args.repo / INT8_NAME, args.keep_versions)
    run.files += [dest, cfg_path]
    evaluation = evaluate_int8(Path(info["file"]), dest, payload, test, data)
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
                "parity max err": "acc n/a (no test data)"
                if evaluation["int8_accuracy"] is None
                else f"acc {evaluation['int8_accuracy']:.4f} vs {evaluation['fp32_accuracy']:.4f}",
                "p50 ms b=1": evaluation["int8_latency_ms"]["1"]["p50_ms"],
            }
        )
    )
