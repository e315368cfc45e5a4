"""Local Triton from pip (no Docker): a Python-backend view of the model repository and a server launcher."""

from serving.triton.dist import TritonNotFound
from serving.triton.launcher import Ports, TritonServer, TritonStartError
from serving.triton.view import View, ViewError, build_view

__all__ = ["Ports", "TritonNotFound", "TritonServer", "TritonStartError", "View", "ViewError", "build_view"]
