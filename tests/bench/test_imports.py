"""DESIGN.md: bench/ imports serving's contracts, request bodies and input building only (never the app or
runtime, so it measures the gateway from outside); torch (and the training code) only in the naive peer; export
only in the FAISS benchmarks (micro.py, faiss_scale.py), which build indexes with export/retrieval.py."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _allowed_serving(name: str) -> bool:
    parts = name.split(".")
    # forecast/source.py builds the TCN's inputs from the stored sales: input building, like features.py
    return parts[1:2] == ["contracts"] or (len(parts) == 3 and parts[2] in ("schemas", "features", "source"))


def test_bench_import_rules() -> None:
    offenders = []
    for path in BENCH.rglob("*.py"):
        naive = "baseline" in path.relative_to(BENCH).parts
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top in ("torch", "training", "transformers") and not naive:
                offenders.append(f"{path.name}:{line} {name} (torch only in bench/baseline)")
            if top == "serving" and not naive and not _allowed_serving(name):
                offenders.append(f"{path.name}:{line} {name} (serving's contracts, schemas, features only)")
            if top == "export" and path.name not in ("micro.py", "faiss_scale.py"):
                offenders.append(f"{path.name}:{line} {name} (export/retrieval.py only for the FAISS benchmarks)")
    assert not offenders, offenders
