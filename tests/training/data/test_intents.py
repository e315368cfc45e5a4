"""Intent loaders: BANKING77 from the shared folder, `text,label` CSVs, every error path, the stratified split."""

import json

import numpy as np
import pytest

from training.data.errors import DataFileError
from training.data.intents import (
    load_banking77,
    load_intent_csv,
    shared_data_dir,
    stratified_split,
)

BANKING77 = shared_data_dir() / "banking77"
needs_banking77 = pytest.mark.skipif(not BANKING77.is_dir(), reason=f"BANKING77 not found at {BANKING77}")


def _csv(tmp_path, body: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


@needs_banking77
def test_banking77_train_and_test():
    categories = json.loads((BANKING77 / "categories.json").read_text())
    train, test = load_banking77("train"), load_banking77("test")
    for ds in (train, test):
        assert ds.labels == tuple(categories)
        assert ds.label.dtype == np.int64 and ds.label.shape == (len(ds.texts),)
        assert ds.label.min() >= 0 and ds.label.max() < len(categories)
        assert all(t.strip() for t in ds.texts)
    # every intent is represented in both splits, and the first row is the CSV's first row
    assert np.unique(train.label).size == len(categories) == np.unique(test.label).size
    first_text, first_label = (BANKING77 / "train.csv").read_text().splitlines()[1].rsplit(",", 1)
    assert train.texts[0] == first_text.strip('"') and train.labels[train.label[0]] == first_label
    assert len(train) > 3 * len(test) > 0


def test_shared_data_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPSERVE_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.delenv("SHOPSERVE_SHARED_DATA")
    assert shared_data_dir().parts[-2:] == ("shared", "data")


def test_banking77_errors(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_banking77("validation", root=tmp_path)
    with pytest.raises(DataFileError, match=r"categories\.json"):
        load_banking77("train", root=tmp_path)
    (tmp_path / "categories.json").write_text('["a", "b"]')
    _csv(tmp_path, "text,category\nhello,a\nbye,c\n", "train.csv")
    with pytest.raises(DataFileError, match=r"line 3, column 'category'.*unknown label 'c'"):
        load_banking77("train", root=tmp_path)


def test_intent_csv_happy_path(tmp_path):
    path = _csv(tmp_path, 'text,label,extra\nwhere is my card,card,x\n"two\nlines",refund,y\n  top me up ,top_up,z\n')
    ds = load_intent_csv(path)
    assert ds.labels == ("card", "refund", "top_up")  # sorted when not given
    assert ds.texts == ["where is my card", "two\nlines", "top me up"]
    assert ds.label.tolist() == [0, 1, 2]
    given = load_intent_csv(path, labels=["top_up", "refund", "card", "unused"])
    assert given.labels == ("top_up", "refund", "card", "unused")
    assert given.label.tolist() == [2, 1, 0]


@pytest.mark.parametrize(
    ("body", "labels", "pattern"),
    [
        ("", None, r"empty file"),
        ("text,label\n", None, r"empty file: a header but no data rows"),
        ("text,intent\nhi,a\n", None, r"line 1, column 'label'.*missing column"),
        ("label\na\n", None, r"line 1, column 'text'.*missing column"),
        ("text,label\nhi,a\n  ,b\n", None, r"line 3, column 'text'.*empty text"),
        ("text,label\nhi,a\nyo,\n", None, r"line 3, column 'label'.*empty label"),
        ("text,label\nhi,a\nshort\n", None, r"line 3.*expected at least 2 fields"),
        # the quoted newline on line 2-3 must not shift the reported line of the bad row
        ('text,label\n"multi\nline",a\nhi,zzz\n', ["a"], r"line 4, column 'label'.*unknown label 'zzz'"),
    ],
)
def test_intent_csv_errors_name_file_line_column(tmp_path, body, labels, pattern):
    path = _csv(tmp_path, body)
    with pytest.raises(DataFileError, match=pattern) as info:
        load_intent_csv(path, labels=labels)
    assert str(path) in str(info.value)


def test_intent_csv_missing_file_and_bad_encoding(tmp_path):
    with pytest.raises(DataFileError, match="file not found"):
        load_intent_csv(tmp_path / "nope.csv")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not UTF-8"):
        load_intent_csv(bad)


def test_stratified_split_keeps_label_shares(tmp_path):
    rows = [f"utterance {i},{'abc'[i % 3] if i < 90 else 'd'}" for i in range(100)]
    ds = load_intent_csv(_csv(tmp_path, "text,label\n" + "\n".join(rows) + "\n"))
    rest, held = stratified_split(ds, 0.2, seed=1)
    assert len(rest) + len(held) == len(ds)
    assert set(rest.texts).isdisjoint(held.texts) and set(rest.texts) | set(held.texts) == set(ds.texts)
    # 30 rows of a/b/c -> 6 held out each; 10 rows of d -> 2
    assert np.bincount(held.label, minlength=4).tolist() == [6, 6, 6, 2]
    # the split is seeded: same seed, same rows; another seed, other rows
    assert stratified_split(ds, 0.2, seed=1)[1].texts == held.texts
    assert stratified_split(ds, 0.2, seed=2)[1].texts != held.texts
