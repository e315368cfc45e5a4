"""Every serving module imports on its own, first, in a fresh interpreter: no import circle hides behind an order.

The third-party libraries are imported once in the parent; each module is then imported first in a forked
child, so the check costs milliseconds per module. `lint-imports` (make test) checks the layers statically.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import serving
from serving.capabilities import discover

ROOT = Path(__file__).resolve().parents[2]


def _serving_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(serving.__path__, "serving.")]
    return sorted(n for n in names if "_pb2" not in n and not n.endswith("__main__"))


def test_each_serving_module_imports_first_in_a_fresh_interpreter() -> None:
    script = textwrap.dedent(
        f"""
        import importlib, os, sys
        for lib in ("numpy", "pydantic", "fastapi", "onnxruntime", "faiss", "grpc", "tokenizers", "tritonclient.grpc"):
            importlib.import_module(lib)
        failed = []
        for name in {_serving_modules()!r}:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException as exc:
                    print(name, type(exc).__name__, exc, flush=True)
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if status:
                failed.append(name)
        print("FAILED", failed)
        sys.exit(1 if failed else 0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_registry_finds_every_capability_and_serves_each_path_once() -> None:
    caps = discover()
    folders = sorted(p.parent.name for p in (ROOT / "serving").glob("*/capability.py"))
    assert [c.name for c in caps] == folders and {"forecast", "intent", "recommend"} <= set(folders)
    paths = [e.path for c in caps for e in c.endpoints]
    assert len(set(paths)) == len(paths)
    assert {"/v1/forecast", "/v1/intent", "/v1/rank", "/v1/recommend"} <= set(paths)
    for cap in caps:
        assert cap.components, f"{cap.name} lists no components for readiness"
        assert importlib.import_module(f"serving.{cap.name}.capability").CAPABILITY is cap


def test_no_transport_import_in_a_capability_pipeline() -> None:
    """The pipelines are plain async functions: importing one loads no web framework and no gRPC stubs (the
    grpc library itself arrives with tritonclient's model-config protobufs, which the runtime reads)."""
    code = (
        "import sys, serving.recommend.pipeline, serving.forecast.pipeline, serving.intent.pipeline;"
        "bad = ('fastapi', 'starlette', 'uvicorn', 'serving.proto.storefront_pb2');"
        "print([m for m in bad if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
