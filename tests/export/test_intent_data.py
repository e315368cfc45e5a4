"""Export's intent extras: the model's own test data for the int8 check, and the shipped OOS rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export.intent_artifacts import _ood_rule
from export.intent_eval import intent_test_data
from export.run_state import ExportArgs, ExportRun
from training.checkpoint import data_source, load_checkpoint, recorded_data_dir, save_checkpoint
from training.data.fingerprints import intent_fingerprint
from training.data.intents import load_intent_csv
from training.report import published_anchor


def _folder(tmp_path, labels=("refund", "top_up")):
    folder = tmp_path / "shop_intents"
    folder.mkdir()
    rows = "\n".join(f"message {i} about {lab},{lab}" for i in range(4) for lab in labels)
    (folder / "train.csv").write_text("text,label\n" + rows + "\n")
    (folder / "test.csv").write_text("text,label\n" + rows + "\n")
    return folder


def _payload(folder, labels, **source):
    train = load_intent_csv(folder / "train.csv")
    test = load_intent_csv(folder / "test.csv", labels=train.labels)
    return {
        "data_fingerprint": intent_fingerprint(train, test),
        "data_source": data_source("intent", fingerprint="", **source),
        "extra": {"labels": list(labels)},
    }


def test_checkpoint_records_its_data_source(tmp_path):
    src = data_source("behavior", path=tmp_path / "log", fingerprint="abc")
    save_checkpoint(tmp_path / "m.pt", model_name="m", config={"a": 1}, state_dict={}, data_source=src)
    ck = load_checkpoint(tmp_path / "m.pt")
    assert ck["data_source"]["path"] == str((tmp_path / "log").resolve()) and ck["data_source"]["fingerprint"] == "abc"
    assert recorded_data_dir(ck, "behavior") == (tmp_path / "log").resolve()
    assert recorded_data_dir(ck, "sales") is None  # another kind of data
    assert recorded_data_dir({"config": {}}, "behavior") is None  # an older checkpoint: nothing recorded


def test_int8_check_uses_the_models_own_test_csv(tmp_path):
    folder = _folder(tmp_path)
    test, name = intent_test_data(_payload(folder, ("refund", "top_up"), path=folder), None)
    assert name.endswith("shop_intents/test.csv") and len(test) == 8 and test.labels == ("refund", "top_up")
    # the override wins over what the checkpoint records
    test, _ = intent_test_data(_payload(folder, ("refund", "top_up"), path=tmp_path / "gone"), folder)
    assert len(test) == 8


def test_int8_check_refuses_other_data_and_skips_unknown_data(tmp_path):
    folder = _folder(tmp_path)
    payload = _payload(folder, ("refund", "top_up"), path=folder)
    payload["data_fingerprint"] = "0" * 16
    with pytest.raises(ValueError, match="fingerprint"):
        intent_test_data(payload, None)
    missing = _payload(folder, ("refund", "top_up"), path=tmp_path / "gone")
    data, why = intent_test_data(missing, None)
    assert data is None and why.startswith("unavailable")  # data gone: the check is skipped, and says why
    # a checkpoint from before data sources, trained on another label set: no BANKING77 figure for it
    old = {"extra": {"labels": ["refund", "top_up"]}}
    data, why = intent_test_data(old, None)
    assert data is None and "not BANKING77" in why


def test_anchor_only_for_its_own_data_set():
    assert published_anchor("banking77")["value"] == pytest.approx(0.937)
    assert published_anchor(None) is None and published_anchor("shop_intents") is None


def test_ood_rule_goes_into_intent_json_with_its_statistics(tmp_path):
    run = ExportRun(ExportArgs(artifacts=tmp_path / "artifacts", repo=tmp_path / "repo"))
    folder = tmp_path / "artifacts" / "intent"
    folder.mkdir(parents=True)
    means, whitening = torch.randn(3, 4), torch.eye(4)
    rule = _ood_rule(run, {"score": "mahalanobis", "threshold": 12.5, "means": means, "whitening": whitening}, folder)
    assert rule == {"score": "mahalanobis", "threshold": 12.5, "statistics": "ood.npz"}
    with np.load(folder / "ood.npz") as f:
        np.testing.assert_allclose(f["means"], means.numpy())
    assert folder / "ood.npz" in run.files  # hashed into the manifest
    energy = _ood_rule(run, {"score": "energy", "threshold": -7.0, "target_in_scope_handoff": 0.05}, folder)
    assert json.loads(json.dumps(energy)) == {"score": "energy", "threshold": -7.0, "target_in_scope_handoff": 0.05}
