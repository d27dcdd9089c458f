"""Prometheus metrics of one service: requests, handled events, event lag and the outbox backlog."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The service's metrics on a registry of its own (several apps can live in one test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_handled = Counter(
            "events_handled_total",
            "Events handled by subject and outcome (ok, duplicate, not_yet, retry, parked).",
            ["subject", "outcome"],
            registry=self.registry,
        )
        self.event_lag = Histogram(
            "event_lag_seconds",
            "From the event's ce-time (its source transaction) to the handler's commit.",
            ["subject"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.outbox_backlog = Gauge("outbox_backlog", "Outbox rows not yet published.", registry=self.registry)
        self.events_published = Counter(
            "events_published_total",
            "Events published to JetStream, by subject.",
            ["subject"],
            registry=self.registry,
        )

    async def endpoint(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
