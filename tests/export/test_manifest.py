"""artifacts/manifest.json: a missing, corrupted or mismatched file is caught with a message naming it."""

from __future__ import annotations

import json

import pytest

from serving.runtime.manifest import ManifestError, sha256_file, verify_manifest, write_manifest


@pytest.fixture
def layout(tmp_path):
    """<tmp>/artifacts/{retrieval/items.faiss, ids.json} and <tmp>/model_repository/din/1/model.onnx."""
    art, repo = tmp_path / "artifacts", tmp_path / "model_repository"
    files = {
        art / "retrieval" / "items.faiss": b"\x00index bytes" * 100,
        art / "ids.json": b'{"items": ["a", "b"]}',
        repo / "din" / "1" / "model.onnx": b"onnx" * 1000,
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    sections = {
        "models": {"din": {"version": 1, "file": "model_repository/din/1/model.onnx"}},
        "retrieval": {"item_count": 2, "embedding_dim": 64, "file": "artifacts/retrieval/items.faiss"},
    }
    manifest = art / "manifest.json"
    write_manifest(manifest, files, sections)
    return manifest, files


def test_written_manifest_verifies(layout):
    manifest, files = layout
    body = verify_manifest(manifest, expect={"retrieval.embedding_dim": 64, "models.din.version": 1})
    assert set(body["files"]) == {
        "artifacts/retrieval/items.faiss",
        "artifacts/ids.json",
        "model_repository/din/1/model.onnx",
    }
    path = next(p for p in files if p.name == "model.onnx")
    assert body["files"]["model_repository/din/1/model.onnx"] == {"sha256": sha256_file(path), "size": 4000}


def test_missing_file(layout):
    manifest, files = layout
    next(p for p in files if p.name == "items.faiss").unlink()
    with pytest.raises(ManifestError, match=r"artifacts/retrieval/items.faiss: missing"):
        verify_manifest(manifest)


def test_corrupted_file_same_size(layout):
    manifest, files = layout
    path = next(p for p in files if p.name == "model.onnx")
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # one flipped byte, size unchanged: only the hash can tell
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"model_repository/din/1/model.onnx: sha256 .* corrupted or replaced"):
        verify_manifest(manifest)


def test_truncated_file(layout):
    manifest, files = layout
    path = next(p for p in files if p.name == "ids.json")
    path.write_bytes(path.read_bytes()[:5])
    with pytest.raises(ManifestError, match=r"artifacts/ids.json: size 5 bytes, manifest says"):
        verify_manifest(manifest)


def test_every_problem_is_listed(layout):
    manifest, files = layout
    for p in files:
        if p.name != "model.onnx":
            p.unlink()
    with pytest.raises(ManifestError) as info:
        verify_manifest(manifest)
    assert "items.faiss: missing" in str(info.value) and "ids.json: missing" in str(info.value)


def test_mismatched_expectation(layout):
    manifest, _ = layout
    with pytest.raises(ManifestError, match=r"retrieval.embedding_dim: manifest has 64, the gateway expects 32"):
        verify_manifest(manifest, expect={"retrieval.embedding_dim": 32})
    with pytest.raises(ManifestError, match=r"models.tcn.version: manifest has '<absent>'"):
        verify_manifest(manifest, expect={"models.tcn.version": 1})


def test_moved_model_repository_with_roots_override(layout, tmp_path):
    manifest, _ = layout
    moved = tmp_path / "elsewhere"
    (tmp_path / "model_repository").rename(moved)
    with pytest.raises(ManifestError, match="missing"):
        verify_manifest(manifest)
    verify_manifest(manifest, roots={"model_repository": moved})


def test_section_may_only_name_hashed_files(tmp_path):
    f = tmp_path / "artifacts" / "a.bin"
    f.parent.mkdir()
    f.write_bytes(b"x")
    with pytest.raises(ManifestError, match=r"names 'artifacts/b\.bin', which is not among the hashed files"):
        write_manifest(tmp_path / "artifacts" / "manifest.json", [f], {"retrieval": {"file": "artifacts/b.bin"}})


def test_absent_or_broken_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no manifest at"):
        verify_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        verify_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99, "files": {}}))
    with pytest.raises(ManifestError, match="unsupported manifest format"):
        verify_manifest(tmp_path / "manifest.json")
