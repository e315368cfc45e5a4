"""`python -m export` on a tiny intent checkpoint trained (well, initialised) on a shop's own CSV folder:
the int8 check runs on that folder's test split without being told, and the OOS (energy) rule reaches the
gateway, which computes the same score from the exported model as training does from the torch one."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from export.pipeline import ExportArgs, run_export
from serving.intent.codec import IntentCodec
from training.checkpoint import data_source, save_checkpoint
from training.data.fingerprints import intent_fingerprint
from training.data.intents import load_intent_csv, load_tokenizer, tokenize
from training.metrics.ood import energy_score, threshold_at_handoff
from training.models.intent import BertIntentModel, IntentConfig


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    intents = pytest.importorskip("training.data.intents")
    try:
        tokenizer_json = intents.encoder_dir() / "tokenizer.json"
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        pytest.skip(f"encoder package not installed: {exc}")
    root = tmp_path_factory.mktemp("intent_export")
    folder = root / "shop_intents"
    folder.mkdir()
    phrases = {"refund": "money back please", "top_up": "add money to my card", "pin": "forgot my pin"}
    rows = [f"{p} {i},{lab}" for i in range(6) for lab, p in phrases.items()]
    (folder / "train.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    (folder / "test.csv").write_text("text,label\n" + "\n".join(rows[:9]) + "\n")
    train = load_intent_csv(folder / "train.csv")
    test = load_intent_csv(folder / "test.csv", labels=train.labels)

    torch.manual_seed(0)
    config = IntentConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, n_labels=3, max_len=16,
    )  # fmt: skip
    model = BertIntentModel(config).eval()
    ids, mask = tokenize(load_tokenizer(16), train.texts)
    with torch.no_grad():
        logits = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    ood = {
        "score": "energy",
        "threshold": threshold_at_handoff(energy_score(logits), 0.05),
        "target_in_scope_handoff": 0.05,
    }
    fp = intent_fingerprint(train, test)
    save_checkpoint(
        root / "checkpoints" / "intent.pt",
        model_name="intent",
        config=asdict(config),
        state_dict=model.state_dict(),
        data_fingerprint=fp,
        data_source=data_source("intent", path=folder, fingerprint=fp),
        extra={
            "labels": list(train.labels),
            "temperature": 1.0,
            "threshold": 0.0,
            "max_len": 16,
            "tokenizer_sha256": hashlib.sha256(tokenizer_json.read_bytes()).hexdigest(),
            "ood": ood,
        },
    )
    args = ExportArgs(
        checkpoints=root / "checkpoints",
        repo=root / "model_repository",
        artifacts=root / "artifacts",
        gpu_config=False,
        exporter="torchscript",
        models=("intent_bert",),
        latency=False,
    )
    return args, run_export(args), model, test


def test_int8_is_checked_on_the_models_own_test_split(exported):
    _, report, model, test = exported
    evaluation = report["models"]["intent_bert_int8"]["evaluation"]
    assert evaluation["data"].endswith("shop_intents/test.csv") and evaluation["test_rows"] == len(test)
    ids, mask = tokenize(load_tokenizer(16), test.texts)
    with torch.no_grad():
        pred = model(torch.from_numpy(ids), torch.from_numpy(mask)).argmax(1).numpy()
    assert evaluation["fp32_accuracy"] == pytest.approx(float(np.mean(pred == test.label)))
    assert 0.0 <= evaluation["fp32_ood_handoff_share"] <= 1.0 and "int8_ood_handoff_share" in evaluation


def test_the_gateway_computes_trainings_ood_score_from_the_exported_model(exported):
    args, report, model, test = exported
    meta = json.loads((args.artifacts / "intent" / "intent.json").read_text())
    assert meta["ood"]["score"] == "energy" and "statistics" not in meta["ood"]
    codec = IntentCodec.load(args.artifacts)
    from export.onnx_export import ort_session

    session = ort_session(report["models"]["intent_bert"]["file"])
    inputs = codec.encode(test.texts)
    outputs = dict(zip(["logits", "probs"], session.run(["logits", "probs"], inputs), strict=True))
    got = codec.ood_scores(outputs, codec.probabilities(outputs))
    with torch.no_grad():
        want = energy_score(model(*(torch.from_numpy(inputs[k]) for k in inputs)).numpy())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    answers = codec.decide(codec.probabilities(outputs), got)
    assert {a["handoff_reason"] for a in answers} <= {None, "out_of_scope", "low_confidence"}
