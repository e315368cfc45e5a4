"""The storefront gRPC API: storefront.proto and the stubs the build generates from it.

`ensure_stubs()` writes storefront_pb2.py, storefront_pb2.pyi and storefront_pb2_grpc.py next to the
.proto when they are missing or older than it; `python -m serving.proto` regenerates them explicitly.
The stubs are build output (ignored by git), so a fresh checkout or install gets them on first use.
"""

from serving.proto.build import ensure_stubs, generate

__all__ = ["ensure_stubs", "generate"]
