"""DESIGN.md: serving/ never imports torch, so the serving image stays small and starts fast."""

import ast
import subprocess
import sys
from pathlib import Path

SERVING = Path(__file__).resolve().parents[2] / "serving"


def test_no_torch_import_in_source():
    offenders = []
    for path in SERVING.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}:{node.lineno}" for n in names if n.split(".")[0] in ("torch", "training")]
    assert not offenders, f"serving/ must not import torch or training: {offenders}"


def test_importing_serving_loads_no_torch():
    code = (
        "import importlib, pkgutil, sys, serving\n"
        "for m in pkgutil.walk_packages(serving.__path__, 'serving.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=SERVING.parent)
