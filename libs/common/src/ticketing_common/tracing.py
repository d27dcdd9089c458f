"""Traces: one purchase is one trace across every process it crosses.

- Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: then nothing here creates a span or touches a header, and every
  helper returns after one check of ``tracer``. On: spans go over OTLP/HTTP (protobuf) to
  ``<endpoint>/v1/traces`` in batches, with the resource ``service.name`` of the process; the SDK's usual
  ``OTEL_*`` variables (sampler, headers, timeouts) apply.
- The W3C trace context travels in HTTP headers and in NATS message headers (``traceparent``): a unit of work
  writes the current one into each event it stages (``inject``), so the outbox, its sweeper and a JetStream
  schedule (nats-server keeps the headers when it fires) all carry it, and the listener runner handles each
  event in a span whose parent is the one that staged it (``span(..., parent=<the message's headers>)``).
- A copy that a later request works on (payments' copy of an order) keeps the ``traceparent`` of the event that
  made it, so the payment joins the order's trace (``span(..., parent=...)``), linked to the request's own.
- Log lines written inside a span carry its ``trace_id`` and ``span_id`` (``logging.JsonFormatter``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

logger = logging.getLogger("ticketing.tracing")

TRACEPARENT = "traceparent"

tracer: Tracer | None = None
"""The process's tracer, or None while tracing is off (the check every helper makes first)."""

_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()


def configure_tracing(service: str, *, endpoint: str, exporter: SpanExporter | None = None) -> None:
    """Turn tracing on for this process when ``endpoint`` (or, in tests, ``exporter``) is given; idempotent."""
    global tracer, _provider
    if tracer is not None or not (endpoint or exporter):
        return
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    _provider = TracerProvider(resource=Resource.create({"service.name": service}))
    _provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    tracer = _provider.get_tracer("ticketing")
    logger.info("tracing on", extra={"endpoint": endpoint or type(exporter).__name__})


def flush_tracing() -> None:
    """Export the spans still buffered (an app stopping; the process's exit does it too)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)


def shutdown_tracing() -> None:
    """Export what is buffered and turn tracing off (at the end of a process, and between tests)."""
    global tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    tracer, _provider = None, None


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context into ``headers`` (of an event or an outgoing request)."""
    if tracer is not None:
        _propagator.inject(headers)


def is_sampled(headers: Mapping[str, str] | None) -> bool:
    """Whether the trace context in ``headers`` asks for recording (W3C flag 01): a listener handles such an event on
    its own, in its own span; a batch of unsampled events stays one set-based statement."""
    if tracer is None or not headers:
        return False
    value = headers.get(TRACEPARENT, "")
    return len(value) == 55 and value[-2:] in _SAMPLED_FLAGS


_SAMPLED_FLAGS = frozenset(f"{flags:02x}" for flags in range(256) if flags & 1)


def current_traceparent() -> str | None:
    """The current span's ``traceparent``, to keep with a record a later request continues the trace from."""
    if tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the span being recorded, if any (for log lines)."""
    if tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Mapping[str, str] | str | None = None,
    attributes: Mapping[str, Any] | None = None,
    link_current: bool = False,
) -> Iterator[Span | None]:
    """A span around the block, current inside it; None (and nothing recorded) while tracing is off.

    ``parent`` is a carrier of headers or a ``traceparent`` string to continue (else the current span);
    ``link_current`` links the span that was current, when ``parent`` moves this one into another trace.
    """
    if tracer is None:
        yield None
        return
    context = None
    links: list[Link] = []
    if parent is not None:
        carrier = {TRACEPARENT: parent} if isinstance(parent, str) else parent
        context = _propagator.extract(carrier)
        current = trace.get_current_span().get_span_context()
        if link_current and current.is_valid:
            links.append(Link(current))
    with tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=dict(attributes or {}), links=links, record_exception=False
    ) as current_span:
        try:
            yield current_span
        except BaseException as exc:
            current_span.record_exception(exc)
            current_span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def server_span(scope: Mapping[str, Any]) -> AbstractContextManager[Span | None]:
    """The span of one HTTP request (an ASGI ``scope``), continuing the caller's trace context if it sent one."""
    headers = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in (b"traceparent", b"tracestate")
    }
    return span(
        f"{scope['method']} {scope['path']}",
        kind=SpanKind.SERVER,
        parent=headers,
        attributes={
            "http.request.method": scope["method"],
            "url.path": scope["path"],
            "server.address": scope["server"][0] if scope.get("server") else "",
        },
    )


def finish_server_span(current: Span | None, *, method: str, route: str, status: int) -> None:
    """Name the request's span after its route template and record its status (5xx is an error)."""
    if current is None:
        return
    current.update_name(f"{method} {route}")
    current.set_attribute("http.route", route)
    current.set_attribute("http.response.status_code", status)
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR))
