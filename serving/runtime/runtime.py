"""`Runtime`: everything a request needs (settings, metrics, the backend, the artifacts) and its life cycle.

Start-up: verify artifacts/manifest.json (a mismatch refuses to start, with the file and the difference
named), load every model of the repository with the backend and warm it up with its config.pbtxt
warm-up requests, put a micro-batcher in front of each model (embedded backend), then load and check
every registered capability's artifacts. Readiness turns true when that is done.

Reload without dropping requests: re-verify the manifest, load the new model versions beside the
serving ones (warmed), reload the artifacts, check them against the new models, then swap both in one
step of the event loop; requests already running finish on what they started with.

Stop: mark draining (readiness false), wait for requests still counted in flight, then the batchers run
what is queued and the sessions close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from serving.contracts.errors import (
    ModelNotLoaded,
    Overloaded,
    ReloadFailed,
    RequestTimeout,
    ServingError,
    ShuttingDown,
    Unavailable,
)
from serving.runtime.backends import make_backend
from serving.runtime.backends.base import InferenceBackend, ModelInfo
from serving.runtime.backends.repository import pins_from_manifest
from serving.runtime.batching import BatchingBackend
from serving.runtime.breaker import STATE_VALUES, CircuitBreaker, ModelUnavailable, State
from serving.runtime.cpus import run_inline
from serving.runtime.event_log import EventLog
from serving.runtime.manifest import ManifestError, load_manifest, verify_manifest
from serving.runtime.metrics import Metrics
from serving.runtime.online_store import open_store
from serving.runtime.registry import Artifacts, Capability, artifact_roots, check_artifacts, load_artifacts
from serving.runtime.settings import Settings

log = logging.getLogger("serving")
T = TypeVar("T")


class Runtime:
    """The serving state shared by the HTTP and gRPC transports; capabilities are given, never imported."""

    def __init__(
        self,
        settings: Settings,
        capabilities: Sequence[Capability] = (),
        metrics: Metrics | None = None,
        backend: InferenceBackend | None = None,
    ):
        self.settings = settings
        self.capabilities = tuple(capabilities)
        self.metrics = metrics or Metrics()
        self._given_backend = backend
        self.backend: InferenceBackend | None = None
        self.artifacts = Artifacts(problems={"all": "starting"})
        self.manifest: dict[str, Any] | None = None
        self.started = False
        self.draining = False
        self.inflight = 0
        self.startup_s: float | None = None
        self.breakers: dict[str, CircuitBreaker] = {}
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()  # signal-started reloads, referenced until done
        # Index searches and other short CPU calls: on the loop where a thread hop buys nothing (runtime/cpus.py).
        self.inline_calls = run_inline(settings.model_calls, on_gpu=False)
        # Live events: per-user online state (memory or Redis) and the durable log; closed last in stop().
        self.online = open_store(settings)
        self.event_log = EventLog(settings.event_log_dir, settings.event_log_max_bytes, settings.event_log_flush_s)
        self.event_log.on_written = self.metrics.event_log_lines.inc
        # The capabilities' own long-lived state (serving/runtime/registry.py `service`), closed in stop().
        self.services: dict[str, Any] = {}
        for cap in self.capabilities:
            state = cap.service(settings, self.metrics) if cap.service is not None else None
            if state is not None:
                self.services[cap.name] = state

    # ---- life cycle

    def _verify_manifest(self) -> dict[str, Any] | None:
        s = self.settings
        if not s.manifest_path.is_file():
            if s.require_manifest:
                raise ManifestError(f"no manifest at {s.manifest_path}; build the artifacts with `make models`")
            log.warning("no %s: artifacts are not verified", s.manifest_path)
            return None
        if s.manifest_check == "off":
            return load_manifest(s.manifest_path)
        return verify_manifest(s.manifest_path, roots=artifact_roots(s), check_hashes=s.manifest_check == "hash")

    def _load_artifacts(self, manifest: Mapping[str, Any] | None) -> Artifacts:
        return load_artifacts(self.capabilities, self.settings, manifest)

    async def start(self) -> None:
        t0 = time.perf_counter()
        s = self.settings
        self.manifest = await asyncio.to_thread(self._verify_manifest)
        backend = self._given_backend or make_backend(s)
        if s.batching and backend.kind == "embedded":  # Triton batches on its side
            backend = BatchingBackend(
                backend,
                max_batch_size=s.batch_max_size,
                max_delay_ms=s.batch_max_delay_ms,
                concurrency=s.batch_concurrency,
                queue_max_batches=s.queue_max_batches,
                observer=self.metrics,
                retry_after=s.retry_after_s,
                min_gain=s.batch_min_gain,
            )
        self.backend = backend
        await backend.load(s.models, pins_from_manifest(self.manifest))
        artifacts = await asyncio.to_thread(self._load_artifacts, self.manifest)
        check_artifacts(self.capabilities, artifacts, backend.models(), s)
        self.artifacts = artifacts
        self._publish_versions()
        await self.event_log.start()
        self.started = True
        self.startup_s = time.perf_counter() - t0
        models = ", ".join(f"{n} v{i.version}" for n, i in backend.models().items()) or "none"
        log.info("ready in %.2f s: %s backend, models %s", self.startup_s, backend.kind, models)
        for component, why in self.artifacts.problems.items():
            log.warning("%s unavailable: %s", component, why)

    async def stop(self) -> None:
        self.draining = True
        deadline = time.perf_counter() + self.settings.drain_timeout_s
        while self.inflight > 0 and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        if self.inflight:
            log.warning("shutting down with %d requests still running", self.inflight)
        for state in self.services.values():
            await state.close()  # background work (shadow runs) ends before the models and stores close
        await self.event_log.close()  # every accepted event reaches the disk before the process ends
        await self.online.close()
        if self.backend is not None:
            await self.backend.close()

    async def reload(self, models: list[str] | None = None) -> dict[str, Any]:
        """Re-verify, load beside, swap. Raises ReloadFailed (the serving versions stay) on any problem."""
        backend = self._backend()
        async with self._reload_lock:
            await self.event_log.flush()  # what a retraining after this reload reads is complete
            try:
                manifest = await asyncio.to_thread(self._verify_manifest)
                artifacts = await asyncio.to_thread(self._load_artifacts, manifest)
                result = await backend.reload(models, pins_from_manifest(manifest))
            except ReloadFailed:
                self.metrics.reloads.labels("failed").inc()
                raise
            except Exception as exc:  # bad manifest, unreadable index or table (faiss raises RuntimeError)...
                self.metrics.reloads.labels("failed").inc()
                raise ReloadFailed(f"reload refused, the serving versions stay: {exc}") from exc
            try:
                check_artifacts(self.capabilities, artifacts, backend.models(), self.settings)
            except ManifestError as exc:  # only a manifest that contradicts itself gets here
                self.metrics.reloads.labels("failed").inc()
                self._publish_versions()
                msg = f"new model versions serve, but the new artifacts do not fit them (previous ones stay): {exc}"
                raise ReloadFailed(msg) from exc
            self.artifacts, self.manifest = artifacts, manifest  # no await since the model swap: one step
            self._publish_versions()
            self.metrics.reloads.labels("ok").inc()
            log.info("reloaded: changed %s, unchanged %s", result.changed, result.unchanged)
            return {
                "changed": {n: {"from": a, "to": b} for n, (a, b) in result.changed.items()},
                "unchanged": result.unchanged,
                "artifacts_reloaded": True,
            }

    def reload_in_background(self) -> None:
        """SIGHUP entry point: a failed reload is logged, never raised into the loop."""

        async def run() -> None:
            try:
                await self.reload()
            except ServingError as exc:
                log.error("SIGHUP reload failed: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- used by the capabilities' handlers

    def _backend(self) -> InferenceBackend:
        if self.backend is None:
            raise Unavailable("the gateway is starting")
        return self.backend

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """A short CPU-bound call (an index search): on the event loop or in a worker thread, as decided."""
        if self.inline_calls:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    def models(self) -> Mapping[str, ModelInfo]:
        """The serving version of every loaded model (empty while starting)."""
        return self.backend.models() if self.backend is not None else {}

    def model(self, name: str) -> ModelInfo:
        """The serving version of a model, or 503 'model not loaded'."""
        info = self._backend().models().get(name)
        if info is None:
            raise ModelNotLoaded(name, "not in the model repository" if self.started else "starting")
        return info

    async def infer(self, model: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """One model call within its budget (SERVING_MODEL_TIMEOUT_MS), through the model's circuit breaker.

        A failure of the model (unreachable, erroring, past its budget, breaker open) raises ModelUnavailable,
        which a capability may degrade on; load shedding and bad input pass through unchanged."""
        backend = self._backend()
        breaker = self.breaker(model)
        breaker.before_call()
        try:
            async with asyncio.timeout(self.settings.model_budget_s):
                outputs = await backend.infer(model, inputs)
        except (Overloaded, ShuttingDown, ModelNotLoaded, ValueError, asyncio.CancelledError):
            breaker.cancelled()  # shed, never deployed, bad input or the caller gone: says nothing of the model
            raise
        except TimeoutError as exc:
            why = f"no answer within {self.settings.model_budget_s * 1e3:g} ms"
            breaker.failure(why)
            raise ModelUnavailable(model, why) from exc
        except (Unavailable, RequestTimeout) as exc:
            breaker.failure(exc.message)
            log.warning("model %s failed: %s", model, exc.internal or exc.message)
            raise ModelUnavailable(model, exc.message, retry_after=exc.retry_after or 1) from exc
        except ServingError as exc:
            breaker.failure(exc.message)
            log.warning("model %s failed: %s", model, exc.internal or exc.message)
            raise ModelUnavailable(model, "the model server failed") from exc
        except Exception as exc:  # unforeseen: counted against the model, answered as an internal error
            breaker.failure(type(exc).__name__)
            raise
        breaker.success()
        return outputs

    def breaker(self, model: str) -> CircuitBreaker:
        breaker = self.breakers.get(model)
        if breaker is None:
            s = self.settings
            breaker = CircuitBreaker(
                model,
                failures_to_open=s.breaker_failures,
                reset_s=s.breaker_reset_s,
                on_change=self._breaker_moved,
                probe=self._backend().ready,  # a readiness check, in the background: no shopper waits on it
            )
            self.breakers[model] = breaker
            self.metrics.breaker_state.labels(model).set(0)
        return breaker

    def _breaker_moved(self, model: str, old: State, new: State) -> None:
        self.metrics.breaker_state.labels(model).set(STATE_VALUES[new])
        self.metrics.breaker_changes.labels(model, new).inc()

    # ---- operations

    async def readiness(self) -> tuple[bool, dict[str, int], dict[str, str]]:
        models = {n: i.version for n, i in self.models().items()}
        components = {f"model:{n}": "ok" for n in models}
        components.update(self.artifacts.problems)
        components.update({part: "ok" for part in self.artifacts.parts})
        backend_ok = self.backend is not None and await self.backend.ready()
        if not models:
            components["models"] = f"no models loaded from {self.settings.model_repository} (run `make models`)"
        if self.backend is not None and not backend_ok:
            components["backend"] = f"{self.backend.kind} backend not ready"
        # Informational: without the online store recommend uses the stored history and events answer 503.
        components["online_store"] = await self.online.health() or "ok"
        for name, breaker in self.breakers.items():
            if breaker.state != "closed" and f"model:{name}" in components:
                components[f"model:{name}"] = f"circuit {breaker.state.replace('_', '-')}: {breaker.last_failure}"
        if self.draining:
            components["gateway"] = "draining (shutting down)"
        elif not self.started:
            components["gateway"] = "starting"
        ready = self.started and not self.draining and backend_ok and bool(models)
        return ready, models, components

    def describe_capabilities(self) -> dict[str, dict[str, Any]]:
        """Per capability: its endpoints, the models it answers with (served version or None), its components."""
        served = self.models()
        out: dict[str, dict[str, Any]] = {}
        for cap in self.capabilities:
            names = cap.models(self.settings, served)
            out[cap.name] = {
                "endpoints": [e.path for e in cap.endpoints],
                "models": {n: served[n].version if n in served else None for n in names},
                "components": {
                    c: "ok" if c in self.artifacts.parts else self.artifacts.problems.get(c, "not loaded")
                    for c in cap.components
                },
            }
        return out

    def _publish_versions(self) -> None:
        for name, info in self._backend().models().items():
            self.metrics.model_version.labels(name).set(info.version)
