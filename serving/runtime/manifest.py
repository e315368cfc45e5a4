"""artifacts/manifest.json: every file the gateway loads, with its sha256 and size, and the facts that
must agree between them (model versions, item count, embedding dim, index type, data fingerprints).

Standard library only (hashlib, json): export writes it, the gateway verifies it at start and refuses
to serve on any difference, with an error that names the file and what differs.

Layout:
{
  "format": 1, "created": "...",
  "roots": {"artifacts": ".", "model_repository": "../model_repository"},   # relative to the manifest
  "files": {"model_repository/din/1/model.onnx": {"sha256": "...", "size": 123}, ...},  # "<root>/<path>"
  "models": {"din": {"version": 1, "file": "model_repository/din/1/model.onnx", "checkpoint_sha256": ...,
                     "data_fingerprint": "...", ...}},
  "retrieval": {"item_count": N, "embedding_dim": D, "index_type": "ivf_flat", "index_params": {...},
                "metric": "inner_product", "file": "artifacts/retrieval/items.faiss", ...},
  "data": {"behavior": "<fingerprint>", ...},
  ...
}
A file key is "<root name>/<path inside that root>", so a gateway that keeps the model repository
elsewhere passes its own roots to `verify_manifest`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT = 1
DEFAULT_ROOTS = {"artifacts": ".", "model_repository": "../model_repository"}
_CHUNK = 1 << 20


class ManifestError(RuntimeError):
    """The artifacts on disk do not match the manifest; the message names the file and the difference."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return {"sha256": sha256_file(p), "size": p.stat().st_size}


def resolve_roots(manifest_path: str | Path, roots: Mapping[str, str | Path] | None = None) -> dict[str, Path]:
    """Root name -> directory. Relative roots are relative to the manifest's folder; `roots` overrides."""
    base = Path(manifest_path).parent
    out = {k: (base / v).resolve() for k, v in DEFAULT_ROOTS.items()}
    for k, v in (roots or {}).items():
        out[k] = (base / v).resolve() if not Path(v).is_absolute() else Path(v)
    return out


def file_key(path: str | Path, roots: Mapping[str, Path]) -> str:
    """ "<root>/<relative path>" for a file under one of the roots (the deepest root that contains it)."""
    p = Path(path).resolve()
    best = None
    for name, root in roots.items():
        if p.is_relative_to(root) and (best is None or len(root.parts) > len(roots[best].parts)):
            best = name
    if best is None:
        raise ManifestError(f"{p} is under none of the manifest roots {sorted(roots)}")
    return f"{best}/{p.relative_to(roots[best]).as_posix()}"


def key_path(key: str, roots: Mapping[str, Path]) -> Path:
    root, _, rel = key.partition("/")
    if root not in roots or not rel:
        raise ManifestError(f"manifest file key {key!r} does not start with a known root {sorted(roots)}")
    return roots[root] / rel


def write_manifest(
    manifest_path: str | Path,
    files: Iterable[str | Path],
    sections: Mapping[str, Any] | None = None,
    roots: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Hash `files` and write the manifest atomically; `sections` (models, retrieval, data...) go in as they are."""
    manifest_path = Path(manifest_path)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    rel_roots = {**DEFAULT_ROOTS, **(roots or {})}
    abs_roots = resolve_roots(manifest_path, rel_roots)
    entries = {file_key(f, abs_roots): file_entry(f) for f in files}
    body: dict[str, Any] = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "roots": rel_roots,
        "files": dict(sorted(entries.items())),
        **(sections or {}),
    }
    for section, value in (sections or {}).items():
        _check_file_refs(section, value, entries)
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, manifest_path)  # a reader never sees half a manifest
    return body


def _check_file_refs(section: str, value: Any, entries: Mapping[str, Any]) -> None:
    """Every "file" a section names must be a hashed file (so the gateway never loads an unchecked one)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == "file" and isinstance(v, str) and v not in entries:
                raise ManifestError(f"manifest section {section!r} names {v!r}, which is not among the hashed files")
            _check_file_refs(section, v, entries)


def load_manifest(manifest_path: str | Path) -> dict[str, Any]:
    path = Path(manifest_path)
    if not path.is_file():
        raise ManifestError(f"no manifest at {path}; build the artifacts with `python -m export` (or `make models`)")
    try:
        body = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc})") from exc
    if body.get("format") != FORMAT or not isinstance(body.get("files"), dict):
        raise ManifestError(f"{path}: unsupported manifest format {body.get('format')!r} (expected {FORMAT})")
    return body


def verify_manifest(
    manifest_path: str | Path,
    roots: Mapping[str, str | Path] | None = None,
    expect: Mapping[str, Any] | None = None,
    check_hashes: bool = True,
) -> dict[str, Any]:
    """Check every listed file exists with the recorded size and sha256, and that `expect` agrees.

    expect: dotted paths into the manifest -> the value the caller relies on, e.g.
    {"retrieval.embedding_dim": 64, "models.din.version": 1}. Every problem is collected; one ManifestError
    lists them all (file, what was expected, what was found). Returns the manifest on success.
    """
    body = load_manifest(manifest_path)
    abs_roots = resolve_roots(manifest_path, {**body.get("roots", {}), **(roots or {})})
    problems: list[str] = []
    for key, entry in body["files"].items():
        path = key_path(key, abs_roots)
        if not path.is_file():
            problems.append(f"{key}: missing (expected at {path})")
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            problems.append(f"{key}: size {size} bytes, manifest says {entry['size']} (file changed or truncated)")
        elif check_hashes and (digest := sha256_file(path)) != entry["sha256"]:
            problems.append(
                f"{key}: sha256 {digest[:12]}…, manifest says {entry['sha256'][:12]}… (file corrupted or replaced)"
            )
    for dotted, want in (expect or {}).items():
        found = lookup(body, dotted)
        if found != want:
            problems.append(f"{dotted}: manifest has {found!r}, the gateway expects {want!r}")
    if problems:
        raise ManifestError(f"{manifest_path}: artifacts do not match the manifest:\n  " + "\n  ".join(problems))
    return body


MISSING = "<absent>"


def lookup(body: Mapping[str, Any], dotted: str) -> Any:
    """Value at "a.b.c" in nested dicts, or "<absent>"."""
    node: Any = body
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node
