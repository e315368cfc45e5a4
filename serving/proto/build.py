"""Generate the Python stubs of storefront.proto with grpcio-tools (part of the `serve` extra).

protoc runs with the repository root as include path, so the generated grpc module imports its
messages as `serving.proto.storefront_pb2` (a plain `-I serving/proto` would give a top-level
`import storefront_pb2` that only works with serving/proto on sys.path). Files are generated into a
temporary folder and moved into place one by one, so a process that imports them never sees a
half-written file, and two processes generating at once both end with complete stubs.
"""

from __future__ import annotations

import importlib.resources
import os
import tempfile
import threading
from pathlib import Path

PROTO = Path(__file__).resolve().with_name("storefront.proto")
ROOT = PROTO.parents[2]  # the folder holding the `serving` package
OUTPUTS = ("storefront_pb2.py", "storefront_pb2.pyi", "storefront_pb2_grpc.py")

_lock = threading.Lock()


def outputs() -> list[Path]:
    return [PROTO.with_name(name) for name in OUTPUTS]


def stale() -> bool:
    """True when a stub is missing or older than the .proto."""
    source = PROTO.stat().st_mtime
    return any(not p.is_file() or p.stat().st_mtime < source for p in outputs())


def generate(force: bool = False) -> list[Path]:
    """Run protoc when the stubs are stale (always with `force`); returns the files written."""
    with _lock:
        if not force and not stale():
            return []
        try:
            from grpc_tools import protoc
        except ImportError as exc:
            raise RuntimeError("generating the gRPC stubs needs grpcio-tools: pip install 'shopserve[serve]'") from exc
        well_known = importlib.resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
        try:
            with tempfile.TemporaryDirectory(prefix=".stubs-", dir=PROTO.parent) as tmp:
                args = [
                    "protoc",
                    f"-I{ROOT}",
                    f"-I{well_known}",
                    f"--python_out={tmp}",
                    f"--pyi_out={tmp}",
                    f"--grpc_python_out={tmp}",
                    str(PROTO),
                ]
                if protoc.main(args) != 0:
                    raise RuntimeError(f"protoc failed on {PROTO} (its message is above)")
                made = Path(tmp) / PROTO.parent.relative_to(ROOT)
                for target in outputs():
                    os.replace(made / target.name, target)
        except PermissionError as exc:
            raise RuntimeError(
                f"cannot write the gRPC stubs next to {PROTO} ({exc}); run `python -m serving.proto` at build time"
            ) from exc
        return outputs()


def ensure_stubs() -> None:
    """Generate the stubs if they are missing or stale; cheap (a few stat calls) when they are current."""
    if stale():
        generate()
