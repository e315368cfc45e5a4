"""The capability registry: every `serving/<name>/capability.py` that defines CAPABILITY, found at start-up.

A new capability is a folder with capability.py, pipeline.py and schemas.py (plus its RPC in
serving/proto/storefront.proto and its model's spec in serving/contracts/model_specs.py); nothing else in
serving/ lists it. The order is by folder name, so routes, readiness and /v1/models are stable.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import serving
from serving.runtime.registry import Capability

MODULE = "capability"


@cache
def discover() -> tuple[Capability, ...]:
    found: list[Capability] = []
    for pkg in sorted(m.name for m in pkgutil.iter_modules(serving.__path__) if m.ispkg):
        if importlib.util.find_spec(f"serving.{pkg}.{MODULE}") is None:
            continue
        module = importlib.import_module(f"serving.{pkg}.{MODULE}")
        cap = getattr(module, "CAPABILITY", None)
        if not isinstance(cap, Capability):
            raise TypeError(f"serving/{pkg}/{MODULE}.py must define CAPABILITY = Capability(...)")
        found.append(cap)
    names = [e.path for c in found for e in c.endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"two capabilities serve the same path: {sorted(names)}")
    return tuple(found)
