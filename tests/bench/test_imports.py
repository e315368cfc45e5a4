"""DESIGN.md: bench/ imports serving's contracts, request bodies and input building only (never the app or
runtime, so it measures the gateway from outside); torch (and the training code) only in the naive peer; export
only in the FAISS benchmarks (micro.py, faiss_scale.py), which build indexes with export/retrieval.py. The one
exception is bench/gpu, the GPU machine's script: it checks the GPU paths of training, export and the retrieval
engine themselves, in-process (export parity on the CUDA EP, samples/s of the training tasks, CuPy exact search),
and measures the gateway from outside through `python -m bench` like the rest."""

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
    # forecast/source.py builds the TCN's inputs from the stored sales: input building, like features.py;
    # recommend/membership.py is the numpy id test the bound's index filter shares with the gateway, and
    # recommend/interests.py the numpy merge of a multi-interest user's searches
    return parts[1:2] == ["contracts"] or (
        len(parts) == 3 and parts[2] in ("schemas", "features", "source", "membership", "interests")
    )


GPU_PATHS = ("torch", "training", "export", "serving.recommend.exact_index")  # what bench/gpu checks in-process


def test_bench_import_rules() -> None:
    offenders = []
    for path in BENCH.rglob("*.py"):
        if "gpu" in path.relative_to(BENCH).parts:
            imports = [(line, name) for line, name in _imports(path) if not name.startswith(GPU_PATHS)]
        else:
            imports = _imports(path)
        naive = "baseline" in path.relative_to(BENCH).parts
        for line, name in imports:
            top = name.split(".")[0]
            if top in ("torch", "training", "transformers") and not naive:
                offenders.append(f"{path.name}:{line} {name} (torch only in bench/baseline)")
            if top == "serving" and not naive and not _allowed_serving(name):
                offenders.append(f"{path.name}:{line} {name} (serving's contracts, schemas, features only)")
            if top == "export" and path.name not in ("micro.py", "faiss_scale.py"):
                offenders.append(f"{path.name}:{line} {name} (export/retrieval.py only for the FAISS benchmarks)")
    assert not offenders, offenders
