"""The gRPC stubs are build output: generated from storefront.proto when missing or stale, importable as
`serving.proto.*` (not as top-level modules)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from serving.proto import build


def test_a_fresh_tree_generates_importable_stubs(tmp_path):
    """What a fresh checkout or install sees: the .proto and no stubs. A copy, so the shared tree is untouched."""
    proto = tmp_path / "serving" / "proto"
    proto.mkdir(parents=True)
    (tmp_path / "serving" / "__init__.py").write_text("")
    for name in ("__init__.py", "build.py", "storefront.proto"):
        shutil.copy(build.PROTO.with_name(name), proto / name)
    code = (
        "from serving.proto import ensure_stubs; ensure_stubs()\n"
        "from serving.proto import storefront_pb2_grpc as g\n"
        "assert g.StorefrontStub and g.serving_dot_proto_dot_storefront__pb2.Id\n"
        f"assert g.__file__.startswith({str(tmp_path)!r}), g.__file__\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, env={**os.environ, "PYTHONPATH": ""})
    assert sorted(p.name for p in proto.glob("storefront_pb2*")) == sorted(build.OUTPUTS)
    grpc_module = (proto / "storefront_pb2_grpc.py").read_text()
    assert "from serving.proto import storefront_pb2 as" in grpc_module and "\nimport storefront_pb2" not in grpc_module


def test_stale_stubs_are_regenerated():
    build.ensure_stubs()
    assert not build.stale()
    old = build.PROTO.stat().st_mtime - 60
    stub = build.PROTO.with_name("storefront_pb2.pyi")
    os.utime(stub, (old, old))  # as after an edit of the .proto
    assert build.stale()
    build.ensure_stubs()
    assert not build.stale() and Path(stub).stat().st_mtime >= build.PROTO.stat().st_mtime
