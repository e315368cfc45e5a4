"""The intent model's own test data, and the int8 model checked on it against the fp32 one.

The test set is the one the checkpoint records (`data_source`: BANKING77, or the folder whose test.csv
it was evaluated on), or `--intent-data` to override; its fingerprint must match the checkpoint's, so
the int8 accuracy is measured on exactly the data the training report used. A checkpoint from before
data sources were recorded falls back to BANKING77 only when its labels are BANKING77's; otherwise the
accuracy check is skipped and the report says why (never a figure on someone else's label set).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from export.onnx_export import measure_latency, ort_session
from serving.contracts.model_specs import SPECS
from training.checkpoint import recorded_data_dir
from training.common import progress
from training.data.schema import IntentDataset


def intent_test_data(payload: Mapping[str, Any], override: Path | None) -> tuple[IntentDataset | None, str]:
    """-> (the model's test set, a description), or (None, why there is none)."""
    from training.data.errors import DataFileError
    from training.data.fingerprints import intent_fingerprint
    from training.data.intents import load_banking77, load_intent_csv

    labels = list((payload.get("extra") or {}).get("labels") or [])
    source = payload.get("data_source") or {}
    folder = override or recorded_data_dir(payload, "intent")
    try:
        if folder is not None:
            train = load_intent_csv(Path(folder) / "train.csv", labels=labels or None)
            test = load_intent_csv(Path(folder) / "test.csv", labels=train.labels)
            name = f"{folder}/test.csv"
        elif source.get("name") == "banking77" or (not source and labels == list(load_banking77("test").labels)):
            train, test, name = load_banking77("train"), load_banking77("test"), "BANKING77 test"
        else:
            return None, "unknown: the checkpoint records no test data and its labels are not BANKING77's"
    except (DataFileError, FileNotFoundError) as exc:
        return None, f"unavailable: {exc}"
    want = payload.get("data_fingerprint")
    if want and intent_fingerprint(train, test) != want:
        raise ValueError(
            f"the intent model was trained on data with fingerprint {want}, but {name} has "
            f"{intent_fingerprint(train, test)}; pass --intent-data with the folder used in training"
        )
    if list(test.labels) != labels and labels:
        raise ValueError(f"{name}: labels differ from the model's {len(labels)} labels")
    return test, name


def _ood_scores(ood: Mapping[str, Any], outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    from training.metrics.ood import Mahalanobis, energy_score

    if ood["score"] == "energy":
        return energy_score(outputs["logits"])
    stats = Mahalanobis(np.asarray(ood["means"], np.float32), np.asarray(ood["whitening"], np.float32))
    return stats.score(outputs["embedding"])


def evaluate_int8(
    fp32: Path, int8: Path, payload: Mapping[str, Any], test: IntentDataset | None, data: str
) -> dict[str, Any]:
    """Test accuracy of both models on the model's own test set (ONNX Runtime, CPU; None without one) and
    their latency at batch 1 and 32."""
    config = payload["config"]
    out: dict[str, Any] = {"test_rows": len(test) if test is not None else 0, "data": data}
    sessions = {"fp32": ort_session(fp32), "int8": ort_session(int8)}
    if test is not None:
        from training.data.intents import load_tokenizer, tokenize

        ids, mask = tokenize(load_tokenizer(int(config["max_len"])), test.texts)
        order = np.argsort(mask.sum(1), kind="stable")  # similar lengths together: less padding per batch
        ood = (payload.get("extra") or {}).get("ood") or {}
        for tag, session in sessions.items():
            names = [o.name for o in session.get_outputs() if o.name in ("logits", "embedding")]
            got = {n: [] for n in names}
            for s in progress(range(0, len(order), 64), desc=f"intent {tag} eval", leave=False):
                rows = order[s : s + 64]
                width = int(mask[rows].sum(1).max())
                feed = {"input_ids": ids[rows, :width], "attention_mask": mask[rows, :width]}
                for n, v in zip(names, session.run(names, feed), strict=True):
                    got[n].append(v)
            inv = np.argsort(order)  # back to the test set's row order
            res = {n: np.concatenate(v)[inv] for n, v in got.items()}
            out[f"{tag}_accuracy"] = float((res["logits"].argmax(1) == test.label).mean())
            if ood.get("score") in ("energy", "mahalanobis"):
                # int8 moves the scores a little: how many in-scope messages each hands off at the fp32 threshold
                out[f"{tag}_ood_handoff_share"] = float(np.mean(_ood_scores(ood, res) > float(ood["threshold"])))
        out["accuracy_change"] = out["int8_accuracy"] - out["fp32_accuracy"]
    else:
        out.update(fp32_accuracy=None, int8_accuracy=None, accuracy_change=None)
    for tag, session in sessions.items():
        out[f"{tag}_latency_ms"] = measure_latency(session, SPECS["intent_bert"], config, (1, 32), length=32)
    out["speedup_batch_1"] = out["fp32_latency_ms"]["1"]["p50_ms"] / out["int8_latency_ms"]["1"]["p50_ms"]
    out["speedup_batch_32"] = out["fp32_latency_ms"]["32"]["p50_ms"] / out["int8_latency_ms"]["32"]["p50_ms"]
    return out
