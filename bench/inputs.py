"""Model inputs shaped like the gateway's calls, from the artifacts (for Triton alone and the micro-benchmarks).

The gateway sends, per /v1/recommend, one user-tower row and one DIN row per candidate, each with the
user's history (its real length, at most the served model's maximum); per /v1/intent, one text tokenized
to its own length. The rows are built by the gateway's own code (serving/recommend/features.py) from the
artifacts' feature tables, for a typical stored user: the median history length among users with one,
cut to the served model's maximum as the gateway does, against random catalogue items; BERT gets a text
of the median token count of the load test's messages. So no input takes a path real traffic would not.
Arrays come back contiguous, as the gateway's backends make them before a model runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bench.payloads import intent_texts
from serving.recommend.features import FeatureStore, UserTable, din_inputs, user_tower_inputs

__all__ = [
    "FeatureStore",
    "IntentTexts",
    "contiguous",
    "din_request",
    "served_lengths",
    "typical_user",
    "user_tower_batch",
    "user_tower_request",
    "users_with_history",
]


def served_lengths(repository: Path, model: str) -> dict[str, int]:
    """Longest warm-up length of each dynamic input in `model`'s config.pbtxt: the history length the gateway
    cuts to (export warms up at the model's maximum)."""
    from serving.contracts.triton_config import parse_config  # tritonclient's protobuf: only when asked

    path = repository / model / "config.pbtxt"
    if not path.is_file():
        return {}
    cfg = parse_config(path)
    out: dict[str, int] = {}
    for t in cfg.input:
        axes = [i for i, d in enumerate(t.dims) if d == -1]
        for w in cfg.model_warmup:
            if len(axes) == 1 and t.name in w.inputs and len(w.inputs[t.name].dims) == len(t.dims):
                out[t.name] = max(out.get(t.name, 0), int(w.inputs[t.name].dims[axes[0]]))
    return out


def _users(fs: FeatureStore) -> UserTable:
    if fs.users is None:
        raise FileNotFoundError("no features/users.npz in the artifacts: bench inputs need stored user histories")
    return fs.users


def users_with_history(fs: FeatureStore) -> np.ndarray:
    return np.flatnonzero(np.diff(_users(fs).hist_offsets) > 0)


def typical_user(fs: FeatureStore) -> int:
    """A user whose stored history has the median length among users with one."""
    known = users_with_history(fs)
    if known.size == 0:
        raise ValueError("no stored user history in users.npz")
    lengths = np.diff(_users(fs).hist_offsets)[known]
    return int(known[np.argmin(np.abs(lengths - np.median(lengths)))])


def _user_tower_row(fs: FeatureStore, user: int, n_features: int, max_hist: int | None) -> dict[str, np.ndarray]:
    feats = fs.user_features(user, n_features) if n_features else None
    return user_tower_inputs(_users(fs).history(user), fs.items, max_hist, feats)


def contiguous(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def user_tower_request(fs: FeatureStore, n_features: int, max_hist: int | None = None) -> dict[str, np.ndarray]:
    """The typical user's user-tower row, as the gateway builds it."""
    return contiguous(_user_tower_row(fs, typical_user(fs), n_features, max_hist))


def user_tower_batch(
    fs: FeatureStore, n_users: int, n_features: int, max_hist: int | None = None
) -> dict[str, np.ndarray]:
    """User-tower rows for up to n_users stored users with a history: each row as the gateway builds it, stacked
    with the histories zero-padded to the longest (as the gateway's micro-batcher pads concurrent requests)."""
    parts = [_user_tower_row(fs, int(u), n_features, max_hist) for u in users_with_history(fs)[:n_users]]
    if not parts:
        raise ValueError("no stored user history in users.npz")
    width = max(p["hist_item_ids"].shape[1] for p in parts)
    out = {}
    for name in parts[0]:
        arrays = [p[name] for p in parts]
        if name in ("hist_item_ids", "hist_cat_ids"):
            arrays = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays]
        out[name] = np.concatenate(arrays)
    return out


def din_request(
    fs: FeatureStore, rows: int, n_features: int, max_hist: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """`rows` DIN rows as the gateway builds them: the typical user's history against random catalogue items."""
    user = typical_user(fs)
    candidates = np.random.default_rng(seed).integers(0, len(fs.items), size=rows)
    feats = fs.user_features(user, n_features) if n_features else None
    return contiguous(din_inputs(_users(fs).history(user), candidates, fs.items, max_hist, feats))


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
