"""The capability registry's types: what one job of the gateway (recommend, forecast, intent...) declares once.

A capability names its endpoints (HTTP path and Storefront RPC, request and response bodies, the
transport-free async handler), the repository models it answers with, how its artifacts load (or why
one is missing), and its consistency checks against the served models. Start-up, readiness, reload,
/v1/models and both transports loop over the registered capabilities (serving/capabilities.py), so
none of them can forget one.

Artifacts are loaded per component ("features", "retriever", "intent", "forecast"...): a missing file
makes only the endpoints that need it answer 503; a broken or inconsistent one stops start-up (or
refuses a reload, the serving versions staying).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from serving.contracts.errors import Unavailable
from serving.runtime.backends.base import ModelInfo
from serving.runtime.manifest import MISSING, ManifestError, key_path, lookup, resolve_roots
from serving.runtime.metrics import Metrics
from serving.runtime.settings import Settings

BUILD_HINT = "build it with `make models`"


@dataclass(frozen=True)
class Missing:
    """A component whose file is absent: its endpoints answer 503 with `why`."""

    why: str


@dataclass(frozen=True)
class Endpoint:
    """One operation, served over HTTP (`path`) and gRPC (`rpc` of the Storefront service) by the same handler."""

    rpc: str  # the RPC's name in serving/proto/storefront.proto
    path: str
    request: type[BaseModel]
    response: type[BaseModel]
    handle: Callable[[Any, Any], Awaitable[BaseModel]]  # (Runtime, request) -> answer
    summary: str
    tag: str
    method: Literal["GET", "POST"] = "POST"  # GET: the request model's fields are the query parameters


@dataclass(frozen=True)
class LoadContext:
    """What an artifact loader may read: the settings and the verified manifest."""

    settings: Settings
    manifest: Mapping[str, Any] | None

    def section(self, dotted: str) -> Mapping[str, Any] | None:
        value = lookup(self.manifest, dotted) if self.manifest else None
        return value if isinstance(value, Mapping) else None

    def file(self, dotted: str, default: str) -> Path:
        """Path of an artifact the manifest names (e.g. retrieval.file), else the default under artifacts/."""
        key = lookup(self.manifest, dotted) if self.manifest else None
        if isinstance(key, str) and key != MISSING:
            return key_path(key, resolve_roots(self.settings.manifest_path, artifact_roots(self.settings)))
        return self.settings.artifacts / default


def read_artifact(path: Path, load: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`load(*args)`; any failure names the file (whatever SERVING_MANIFEST_CHECK let through)."""
    try:
        return load(*args, **kwargs)
    except Exception as exc:
        raise ValueError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc}); re-run `python -m export`") from exc


def load_present(path: Path, load: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`read_artifact` when `path` exists, else Missing naming the file and how to build it."""
    if not path.is_file():
        return Missing(f"{path} not found ({BUILD_HINT})")
    return read_artifact(path, load, *args, **kwargs)


def artifact_roots(settings: Settings) -> dict[str, Path]:
    return {"artifacts": settings.artifacts.resolve(), "model_repository": settings.model_repository.resolve()}


Loaded = Mapping[str, Any]  # component -> the loaded object, or Missing(why)
Models = Mapping[str, ModelInfo]


def _no_checks(parts: Mapping[str, Any], models: Models, settings: Settings) -> list[str]:
    return []


@dataclass(frozen=True)
class Capability:
    name: str
    endpoints: tuple[Endpoint, ...]
    # The repository models its answers come from (a setting may choose them, e.g. the intent variant).
    models: Callable[[Settings, Models], tuple[str, ...]]
    load: Callable[[LoadContext], Loaded]
    # Problems that would give wrong answers (sizes that disagree...): the parts given are the loaded ones only.
    check: Callable[[Mapping[str, Any], Models, Settings], list[str]] = _no_checks
    components: tuple[str, ...] = field(default=())  # what `load` returns, for readiness before the first load
    # Long-lived state of its own, kept across reloads (an experiment's ledger and shadow runs): opened with the
    # Runtime as service(settings, metrics) -> an object with `async close()` (or None), closed at its stop;
    # handlers find it in `rt.services[name]`.
    service: Callable[[Settings, Metrics], Any] | None = None


@dataclass(frozen=True)
class Artifacts:
    """Every capability's loaded components; replaced as a whole on reload."""

    parts: Mapping[str, Any] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)  # component -> why it is unavailable

    def with_parts(self, **parts: Any) -> Artifacts:
        """A copy with these components replaced (and no longer listed as missing)."""
        problems = {k: v for k, v in self.problems.items() if k not in parts}
        return Artifacts({**self.parts, **parts}, problems)

    def need(self, component: str) -> Any:
        value = self.parts.get(component)
        if value is None:
            why = self.problems.get(component, "not loaded")  # paths on the server: the log's and /readyz's
            raise Unavailable(f"{component} not available (see /readyz)", retry_after=1, internal=why)
        return value


def load_artifacts(
    capabilities: Iterable[Capability], settings: Settings, manifest: Mapping[str, Any] | None
) -> Artifacts:
    ctx = LoadContext(settings, manifest)
    parts: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for cap in capabilities:
        for component, value in cap.load(ctx).items():
            if isinstance(value, Missing):
                problems[component] = value.why
            else:
                parts[component] = value
    return Artifacts(parts, problems)


def check_artifacts(
    capabilities: Iterable[Capability], artifacts: Artifacts, models: Models, settings: Settings
) -> None:
    """Raise ManifestError naming every artifact that does not fit the others or the served models."""
    problems = [p for cap in capabilities for p in cap.check(artifacts.parts, models, settings)]
    if problems:
        raise ManifestError("artifacts do not fit together: " + "; ".join(problems))
