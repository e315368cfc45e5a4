"""Prometheus metrics of the gateway, on a registry per app (so tests can build many apps).

Names start with `gateway_`. Latency is in seconds (Prometheus convention); per-request timings that
go back to the client are in milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROW_BUCKETS = tuple(float(2**i) for i in range(14))  # 1 .. 8192 rows
_SHARE_BUCKETS = tuple(i / 10 for i in range(11))  # 0, 0.1 .. 1

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("gateway_requests", "HTTP requests answered", ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram(
            "gateway_request_seconds", "HTTP request latency", ["route", "method"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "gateway_stage_seconds",
            "latency of one stage of a request",
            ["route", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge("gateway_inflight_requests", "HTTP requests being handled", registry=r)
        self.errors = Counter("gateway_errors", "errors answered, by type", ["type"], registry=r)
        self.batch_rows = Histogram(
            "gateway_batch_rows", "rows per model execution", ["model"], buckets=_ROW_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "gateway_batch_requests",
            "requests coalesced into one model execution",
            ["model"],
            buckets=_ROW_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "gateway_batch_seconds",
            "model execution latency per batch",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "gateway_queue_wait_seconds",
            "time a request waited in the batch queue",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_rows = Gauge("gateway_queue_rows", "rows waiting in the batch queue", ["model"], registry=r)
        self.model_version = Gauge("gateway_model_version", "version being served", ["model"], registry=r)
        self.reloads = Counter("gateway_reloads", "model reloads", ["outcome"], registry=r)
        self.breaker_state = Gauge(
            "gateway_breaker_state", "circuit breaker per model: 0 closed, 1 half-open, 2 open", ["model"], registry=r
        )
        self.breaker_changes = Counter(
            "gateway_breaker_changes", "circuit breaker state changes", ["model", "to"], registry=r
        )
        self.degraded = Counter(
            "gateway_degraded_answers",
            "answers given without a failed model, by what stood in",
            ["route", "fallback"],
            registry=r,
        )

        # Live events (serving/events) and what recommend makes of them
        self.events = Counter("gateway_events", "events accepted, by type", ["event_type"], registry=r)
        self.events_unknown_items = Counter(
            "gateway_events_unknown_items", "accepted events on items the catalogue does not know", registry=r
        )
        self.event_log_lines = Counter("gateway_event_log_lines", "events written to the durable log", registry=r)
        self.ignored_ids = Counter(
            "gateway_ignored_ids", "request ids the catalogue does not know, skipped", ["route", "field"], registry=r
        )
        self.online_store_errors = Counter(
            "gateway_online_store_errors", "online store calls that failed", ["operation"], registry=r
        )
        self.catalogue_writes = Counter(
            "gateway_catalogue_writes", "item writes taken in by POST /v1/items(/delete)", ["kind"], registry=r
        )

        # Experiments on /v1/recommend (serving/experiments): per experiment and arm, this process's share
        arm = ["experiment", "arm"]
        self.experiment_impressions = Counter(
            "gateway_experiment_impressions",
            "items shown by /v1/recommend answers, per experiment arm",
            arm,
            registry=r,
        )
        self.experiment_events = Counter(
            "gateway_experiment_events",
            "click/cart/buy events credited to the arm whose answer showed the item (once per answer, item, type)",
            [*arm, "event_type"],
            registry=r,
        )
        self.experiment_uncredited = Counter(
            "gateway_experiment_uncredited_events",
            "click/cart/buy events with a request_id that earned no credit (unknown or expired answer, item not "
            "in it, or already counted)",
            ["experiment"],
            registry=r,
        )
        self.experiment_ledger_errors = Counter(
            "gateway_experiment_ledger_errors",
            "experiment ledger calls that failed (answers go on)",
            ["operation"],
            registry=r,
        )
        self.shadow_runs = Counter(
            "gateway_shadow_runs",
            "shadow arm runs by outcome: ok, degraded, failed, dropped",
            [*arm, "outcome"],
            registry=r,
        )
        self.shadow_seconds = Histogram(
            "gateway_shadow_seconds", "latency of a shadow arm run", arm, buckets=_LATENCY_BUCKETS, registry=r
        )
        self.shadow_agreement = Histogram(
            "gateway_shadow_agreement",
            "share of the live answer's items the shadow arm's answer also holds",
            arm,
            buckets=_SHARE_BUCKETS,
            registry=r,
        )

        self._children: dict[tuple, Any] = {}  # (metric, labels) -> child: bounded by routes, models, codes

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: prometheus_client's labels() validates and locks every call."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # Hooks the micro-batcher calls (kept as plain methods so the batcher does not import prometheus).
    def observe_batch(self, model: str, rows: int, requests: int, seconds: float) -> None:
        self.child(self.batch_rows, model).observe(rows)
        self.child(self.batch_requests, model).observe(requests)
        self.child(self.batch_seconds, model).observe(seconds)

    def observe_queue(self, model: str, rows: int, waited_s: float | None = None) -> None:
        self.child(self.queue_rows, model).set(rows)
        if waited_s is not None:
            self.child(self.queue_wait_seconds, model).observe(waited_s)


class StageTimer:
    """Per-stage wall time of one request: `with timer.stage("retrieval"):`; `timer.ms` goes in the answer."""

    def __init__(self, metrics: Metrics | None, route: str):
        self.metrics, self.route = metrics, route
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.ms[name] = round(self.ms.get(name, 0.0) + dt * 1e3, 3)
            if self.metrics is not None:
                self.metrics.child(self.metrics.stage_seconds, self.route, name).observe(dt)
