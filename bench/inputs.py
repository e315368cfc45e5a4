"""Model inputs shaped like the gateway's calls, from the artifacts (for Triton alone and the micro-benchmarks).

The gateway sends, per /v1/recommend, one user-tower row and one DIN row per candidate, each with the
user's history (its real length, at most the served model's maximum); per /v1/intent, one text tokenized
to its own length. The typical shapes come from the artifacts: the median stored history length (cut to
the served model's maximum, as the gateway does) and the median token count of the load test's messages.
Ids are real (a stored user's history, random catalogue items with their categories), so no input takes
a path real traffic would not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.payloads import intent_texts

ID_OFFSET = 1  # model ids = index + 1 (serving/model_specs.py)


def served_lengths(repository: Path, model: str) -> dict[str, int]:
    """Longest warm-up length of each dynamic input in `model`'s config.pbtxt: the history length the gateway
    cuts to (export warms up at the model's maximum)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    path = repository / model / "config.pbtxt"
    if not path.is_file():
        return {}
    cfg = text_format.Parse(path.read_text(), mc.ModelConfig())
    out: dict[str, int] = {}
    for t in cfg.input:
        axes = [i for i, d in enumerate(t.dims) if d == -1]
        for w in cfg.model_warmup:
            if len(axes) == 1 and t.name in w.inputs and len(w.inputs[t.name].dims) == len(t.dims):
                out[t.name] = max(out.get(t.name, 0), int(w.inputs[t.name].dims[axes[0]]))
    return out


@dataclass(frozen=True)
class Catalogue:
    category: np.ndarray  # [n_items] 0-based
    hist_offsets: np.ndarray
    hist_items: np.ndarray
    user_features: np.ndarray | None  # raw codes, -1 = unknown

    @classmethod
    def load(cls, artifacts: Path) -> Catalogue:
        with np.load(artifacts / "features" / "items.npz", allow_pickle=False) as z:
            category = z["category"].astype(np.int64)
        with np.load(artifacts / "features" / "users.npz", allow_pickle=False) as z:
            feats = z["user_features"].astype(np.int64) if "user_features" in z.files else None
            return cls(category, z["hist_offsets"].astype(np.int64), z["hist_items"].astype(np.int64), feats)

    def typical_user(self) -> int:
        """A user whose stored history has the median length among users with one."""
        lengths = np.diff(self.hist_offsets)
        known = np.flatnonzero(lengths > 0)
        if known.size == 0:
            raise ValueError("no stored user history in users.npz")
        median = np.median(lengths[known])
        return int(known[np.argmin(np.abs(lengths[known] - median))])

    def history(self, user: int, max_hist: int | None) -> np.ndarray:
        h = self.hist_items[self.hist_offsets[user] : self.hist_offsets[user + 1]]
        return h[-max_hist:] if max_hist else h


def _history_rows(cat: Catalogue, user: int, rows: int, max_hist: int | None) -> dict[str, np.ndarray]:
    h = cat.history(user, max_hist)
    ids = np.repeat((h + ID_OFFSET)[None, :], rows, axis=0)
    cats = np.repeat((cat.category[h] + ID_OFFSET)[None, :], rows, axis=0)
    return {"hist_item_ids": ids, "hist_cat_ids": cats, "hist_len": np.full(rows, h.size, dtype=np.int64)}


def _user_features(cat: Catalogue, user: int, rows: int, n_features: int) -> np.ndarray:
    raw = cat.user_features[user, :n_features] if cat.user_features is not None else np.full(n_features, -1)
    return np.repeat((np.maximum(raw, -1) + 1)[None, :], rows, axis=0).astype(np.int64)


def user_tower_inputs(cat: Catalogue, n_features: int, max_hist: int | None = None) -> dict[str, np.ndarray]:
    user = cat.typical_user()
    out = _history_rows(cat, user, 1, max_hist)
    if n_features:
        out["user_features"] = _user_features(cat, user, 1, n_features)
    return out


def user_tower_batch(
    cat: Catalogue, n_users: int, n_features: int, max_hist: int | None = None
) -> dict[str, np.ndarray]:
    """User-tower rows for up to n_users stored users with a history, padded to the longest (real queries)."""
    who = np.flatnonzero(np.diff(cat.hist_offsets) > 0)[:n_users]
    hists = [cat.history(int(u), max_hist) for u in who]
    width = max((h.size for h in hists), default=1)
    ids = np.zeros((who.size, width), dtype=np.int64)
    cats = np.zeros_like(ids)
    for row, h in enumerate(hists):  # once per benchmark, not on a request path
        ids[row, : h.size], cats[row, : h.size] = h + ID_OFFSET, cat.category[h] + ID_OFFSET
    out = {"hist_item_ids": ids, "hist_cat_ids": cats, "hist_len": np.array([h.size for h in hists], dtype=np.int64)}
    if n_features:
        out["user_features"] = np.concatenate([_user_features(cat, int(u), 1, n_features) for u in who])
    return out


def din_inputs(
    cat: Catalogue, rows: int, n_features: int, max_hist: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """`rows` DIN rows: the typical user's history against random catalogue items."""
    user = cat.typical_user()
    out = _history_rows(cat, user, rows, max_hist)
    cand = np.random.default_rng(seed).integers(0, cat.category.size, size=rows)
    out["cand_item_ids"] = cand + ID_OFFSET
    out["cand_cat_ids"] = cat.category[cand] + ID_OFFSET
    if n_features:
        out["user_features"] = _user_features(cat, user, rows, n_features)
    return out


class IntentTexts:
    """The load test's messages, tokenized like the gateway does (truncated to max_len, padded to the longest)."""

    def __init__(self, artifacts: Path, n: int = 512, seed: int = 0):
        from tokenizers import Tokenizer

        meta = json.loads((artifacts / "intent" / "intent.json").read_text())
        self.labels: list[str] = list(meta["labels"])
        self.tokenizer = Tokenizer.from_file(str(artifacts / "intent" / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(meta.get("max_len", 128)))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.texts = intent_texts(n, seed)

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.asarray([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64),
        }

    def typical(self, batch: int = 1) -> dict[str, np.ndarray]:
        """`batch` texts of the median token count (the same text repeated: one shape, like one request)."""
        n_tokens = np.array([len(self.tokenizer.encode(t).ids) for t in self.texts])  # one text: no padding
        text = self.texts[int(np.argmin(np.abs(n_tokens - np.median(n_tokens))))]
        return self.encode([text] * batch)
