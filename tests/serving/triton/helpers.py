"""Helpers for the real-server tests: skip where the pip tritonserver cannot run, build inputs, find leftovers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from serving.triton.dist import TritonNotFound, find_dist


def require_tritonserver() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the nvidia-pytriton tritonserver is a Linux binary")
    try:
        find_dist()
    except TritonNotFound as exc:
        pytest.skip(str(exc))


def wire_inputs(module: object, arrays: dict[str, np.ndarray]) -> list:
    """tritonclient inputs (grpc or http module) in the wire layout: a [batch] id tensor travels as [batch, 1]."""
    out = []
    for name, a in arrays.items():
        a = a[:, None] if name == "item_ids" else a
        tensor = module.InferInput(name, list(a.shape), "FP32" if a.dtype == np.float32 else "INT64")  # type: ignore[attr-defined]
        tensor.set_data_from_numpy(a)
        out.append(tensor)
    return out


def live_processes_mentioning(text: str) -> list[int]:
    """Pids (not zombies) whose command line contains `text`: how the tests find a server's leftovers."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(int(proc.name))
    return found
