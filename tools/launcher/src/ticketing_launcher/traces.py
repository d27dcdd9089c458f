"""Traces on one machine: an OTLP/HTTP receiver that keeps spans in memory, and a viewer for them.

Every service exports its spans with OpenTelemetry's OTLP/HTTP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
(``ticketing up --traces`` points it here). Jaeger ships only as a Go module and container images, from no registry
this project installs from, so the project has this small stand-in instead: ``ticketing traces``, or
:class:`OtlpReceiver` in a test.

The receiver (OTLP/HTTP, traces only):

- ``POST /v1/traces`` with ``Content-Type: application/x-protobuf`` (an ``ExportTraceServiceRequest``) or
  ``application/json`` (the OTLP JSON mapping: lowerCamelCase keys, trace and span ids as hex, enums as integers),
  optionally ``Content-Encoding: gzip`` or ``deflate``;
- answers 200 with an ``ExportTraceServiceResponse`` in the request's encoding (``partial_success`` counts spans
  refused for lacking a valid trace or span id); 400 for a body that does not decode, 413 for one over
  ``MAX_BODY_BYTES`` (compressed or not), 415 for another content type or encoding, each with a ``google.rpc.Status``
  body; 404 for other paths.

Spans are kept as :class:`Span` records, at most ``max_spans`` of them: beyond that the traces that received a span
least recently are dropped whole. A span sent twice (an exporter's retry) is kept once.

The viewer, on the same server: ``/`` lists recent traces (newest first; ``?service=`` and ``?q=`` filter),
``/traces/{trace_id}`` draws one as a waterfall, and the same as JSON: ``GET /api/traces`` (``service``, ``q``,
``limit``) and ``GET /api/traces/{trace_id}`` (the spans as a tree). Times in the JSON are Unix nanoseconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import signal
import socket
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ticketing_common.errors import error_body
from ticketing_common.http_server import server_config
from ticketing_launcher import trace_pages

DEFAULT_OTLP_PORT = 4318
DEFAULT_VIEWER_PORT = 16686
DEFAULT_MAX_SPANS = 100_000
MAX_BODY_BYTES = 32 * 1024 * 1024
LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = {"identity": None, "gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + zlib.MAX_WBITS}  # deflate: zlib or gzip

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUSES = {0: "unset", 1: "ok", 2: "error"}
UNKNOWN_SERVICE = "unknown_service"


# -- records --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time: int  # Unix ns
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """One received span. Ids are lowercase hex; ``start`` and ``end`` are Unix nanoseconds."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str  # unspecified, internal, server, client, producer, consumer
    service: str  # the resource's service.name
    start: int
    end: int
    status: str = "unset"  # unset, ok, error
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace_id, span_id)
    events: list[SpanEvent] = field(default_factory=list)
    scope: str = ""  # the instrumentation scope (the tracer's name)

    @property
    def duration(self) -> int:
        """Nanoseconds (0 for a span that ends before it starts)."""
        return max(0, self.end - self.start)


# -- decoding -------------------------------------------------------------------------------------------------------


class Refused(Exception):
    """An export the receiver cannot take: the HTTP status and a ``google.rpc`` code to answer with."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _undecodable(message: str) -> Refused:
    return Refused(400, code_pb2.INVALID_ARGUMENT, message)


def _too_large() -> Refused:
    return Refused(413, code_pb2.RESOURCE_EXHAUSTED, f"The request body is larger than {MAX_BODY_BYTES} bytes")


def decompress(body: bytes, encoding: str, limit: int = MAX_BODY_BYTES) -> bytes:
    """``body`` as sent with ``Content-Encoding: encoding`` (identity, gzip, deflate), at most ``limit`` bytes."""
    wbits = ENCODINGS.get(encoding)
    if wbits is None:
        return body
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _undecodable(f"The body is not valid {encoding} data: {exc}") from exc
    if len(plain) > limit or inflater.unconsumed_tail:
        raise _too_large()
    if not inflater.eof:
        raise _undecodable(f"The {encoding} data is truncated")
    return plain


def _hex_as_base64(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _undecodable(f"{what} must be a hex string")
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError as exc:
        raise _undecodable(f"{what} is not hex: {value[:64]!r}") from exc


def _ids_from_hex(document: object) -> None:
    """OTLP/JSON writes trace and span ids as hex where protobuf's JSON mapping expects base64: convert in place."""

    def items(node: object, *keys: str) -> Iterator[dict[str, Any]]:
        if not isinstance(node, dict):
            return
        for key in keys:
            values = node.get(key)
            if isinstance(values, list):
                yield from (value for value in values if isinstance(value, dict))

    def convert(node: dict[str, Any], *keys: str) -> None:
        for key in keys:
            if key in node:
                node[key] = _hex_as_base64(node[key], key)

    for resource_spans in items(document, "resourceSpans", "resource_spans"):
        for scope_spans in items(resource_spans, "scopeSpans", "scope_spans"):
            for span in items(scope_spans, "spans"):
                convert(span, "traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
                for link in items(span, "links"):
                    convert(link, "traceId", "trace_id", "spanId", "span_id")


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest`` from a protobuf or OTLP/JSON body; :class:`Refused` (400) if it is neither."""
    request = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise _undecodable(f"The body is not an ExportTraceServiceRequest: {exc}") from exc
        return request
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _undecodable(f"The body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _undecodable("The body must be a JSON object")
    _ids_from_hex(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise _undecodable(f"The body is not an ExportTraceServiceRequest: {exc}") from exc
    return request


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which == "double_value" and not math.isfinite(value.double_value):
        return str(value.double_value)  # NaN and infinities have no JSON number: "nan", "inf", "-inf"
    return getattr(value, which)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def spans_of(request: ExportTraceServiceRequest) -> tuple[list[Span], int]:
    """The request's spans as records, and how many were refused (no valid trace or span id)."""
    spans: list[Span] = []
    refused = 0
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                if (
                    len(span.trace_id) != 16
                    or len(span.span_id) != 8
                    or not any(span.trace_id)
                    or not any(span.span_id)
                ):
                    refused += 1
                    continue
                spans.append(
                    Span(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() if any(span.parent_span_id) else None,
                        name=span.name,
                        kind=KINDS.get(span.kind, "unspecified"),
                        service=service,
                        start=span.start_time_unix_nano,
                        end=span.end_time_unix_nano,
                        status=STATUSES.get(span.status.code, "unset"),
                        status_message=span.status.message,
                        attributes=_attributes(span.attributes),
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        events=[
                            SpanEvent(event.name, event.time_unix_nano, _attributes(event.attributes))
                            for event in span.events
                        ],
                        scope=scope,
                    )
                )
    return spans, refused


# -- storage --------------------------------------------------------------------------------------------------------


class SpanStore:
    """The last ``max_spans`` spans by trace, safe to use from any thread."""

    def __init__(self, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        if max_spans < 1:
            raise ValueError("max_spans must be at least 1")
        self.max_spans = max_spans
        self._traces: OrderedDict[str, dict[str, Span]] = OrderedDict()  # least recently added to first
        self._count = 0
        self._changed = threading.Condition()
        self.version = 0  # grows with every change

    def add(self, spans: Iterable[Span]) -> None:
        with self._changed:
            for span in spans:
                trace = self._traces.get(span.trace_id)
                if trace is None:
                    trace = self._traces[span.trace_id] = {}
                else:
                    self._traces.move_to_end(span.trace_id)
                if span.span_id not in trace:
                    self._count += 1
                trace[span.span_id] = span
            while self._count > self.max_spans:
                _, dropped = self._traces.popitem(last=False)
                self._count -= len(dropped)
            self.version += 1
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._traces.clear()
            self._count = 0
            self.version += 1
            self._changed.notify_all()

    def __len__(self) -> int:
        return self._count

    def spans(self) -> list[Span]:
        """Every span kept, trace by trace (the trace that received a span least recently first)."""
        with self._changed:
            return [span for trace in self._traces.values() for span in trace.values()]

    def traces(self) -> dict[str, list[Span]]:
        with self._changed:
            return {trace_id: list(trace.values()) for trace_id, trace in self._traces.items()}

    def trace(self, trace_id: str) -> list[Span]:
        with self._changed:
            return list(self._traces.get(trace_id.lower(), {}).values())

    def wait(self, predicate: Callable[[list[Span]], bool], timeout: float) -> list[Span]:
        """Block until ``predicate(spans)`` holds; the spans then, or :class:`TimeoutError`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                spans = self.spans()
                if predicate(spans):
                    return spans
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(_timeout_message(spans, timeout))
                self._changed.wait(remaining)


def _timeout_message(spans: list[Span], timeout: float) -> str:
    names = sorted({f"{span.service}: {span.name}" for span in spans})
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    return f"the spans did not match within {timeout} s; {len(spans)} received ({shown or 'none'})"


# -- reading traces -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root: Span | None  # None while the root span has not arrived (it ends, and is exported, last)
    name: str  # the root's name, else the earliest span's
    service: str
    services: list[str]  # in the order they first appear
    span_count: int
    error_count: int
    start: int
    end: int

    @property
    def duration(self) -> int:
        return max(0, self.end - self.start)


def summarize(trace_id: str, spans: list[Span]) -> TraceSummary:
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    roots = [span for span in ordered if span.parent_span_id is None]
    first = roots[0] if roots else ordered[0]
    return TraceSummary(
        trace_id=trace_id,
        root=roots[0] if roots else None,
        name=first.name,
        service=first.service,
        services=list(dict.fromkeys(span.service for span in ordered)),
        span_count=len(spans),
        error_count=sum(span.status == "error" for span in spans),
        start=ordered[0].start,
        end=max(span.end for span in spans),
    )


@dataclass
class SpanNode:
    span: Span
    depth: int
    orphan: bool  # it names a parent this trace does not hold (not received, or dropped)
    children: list[SpanNode] = field(default_factory=list)


def span_tree(spans: list[Span]) -> list[SpanNode]:
    """The spans nested by parent, siblings by start time. A span whose parent is missing is a root (``orphan``)."""
    ordered = sorted(spans, key=lambda s: (s.start, s.end, s.span_id))
    ids = {span.span_id for span in ordered}
    children: dict[str, list[Span]] = {}
    for span in ordered:
        if span.parent_span_id is not None and span.parent_span_id in ids and span.parent_span_id != span.span_id:
            children.setdefault(span.parent_span_id, []).append(span)
    roots: list[SpanNode] = []
    placed: set[str] = set()

    def grow(top: SpanNode) -> None:
        stack = [top]
        while stack:
            node = stack.pop()
            for child in children.get(node.span.span_id, []):
                if child.span_id not in placed:  # a cycle of parents cannot loop forever
                    placed.add(child.span_id)
                    child_node = SpanNode(child, node.depth + 1, orphan=False)
                    node.children.append(child_node)
                    stack.append(child_node)

    for span in ordered:
        is_root = span.parent_span_id is None or span.parent_span_id not in ids or span.parent_span_id == span.span_id
        if is_root and span.span_id not in placed:
            placed.add(span.span_id)
            roots.append(SpanNode(span, 0, orphan=span.parent_span_id is not None))
            grow(roots[-1])
    for span in ordered:  # caught in a cycle: shown at the top rather than lost
        if span.span_id not in placed:
            placed.add(span.span_id)
            roots.append(SpanNode(span, 0, orphan=True))
            grow(roots[-1])
    return roots


def walk(nodes: list[SpanNode]) -> Iterator[SpanNode]:
    """Depth first, in display order."""
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def matches(spans: list[Span], *, service: str | None, text: str | None) -> bool:
    if service and not any(span.service == service for span in spans):
        return False
    if not text:
        return True
    needle = text.lower()
    for span in spans:
        haystack = [span.trace_id, span.span_id, span.name, span.service, span.status_message]
        haystack += [f"{key}={value}" for key, value in span.attributes.items()]
        if any(needle in item.lower() for item in haystack):
            return True
    return False


def recent_traces(
    traces: dict[str, list[Span]], *, service: str | None = None, text: str | None = None, limit: int = LIST_LIMIT
) -> list[TraceSummary]:
    """The matching traces, newest (latest start) first."""
    summaries = [
        summarize(trace_id, spans)
        for trace_id, spans in traces.items()
        if spans and matches(spans, service=service, text=text)
    ]
    summaries.sort(key=lambda summary: summary.start, reverse=True)
    return summaries[:limit]


def span_json(span: Span) -> dict[str, Any]:
    return {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "parentSpanId": span.parent_span_id,
        "name": span.name,
        "kind": span.kind,
        "service": span.service,
        "scope": span.scope,
        "start": span.start,
        "end": span.end,
        "duration": span.duration,
        "status": span.status,
        "statusMessage": span.status_message,
        "attributes": span.attributes,
        "events": [{"name": e.name, "time": e.time, "attributes": e.attributes} for e in span.events],
        "links": [{"traceId": trace_id, "spanId": span_id} for trace_id, span_id in span.links],
    }


def node_json(node: SpanNode) -> dict[str, Any]:
    return {**span_json(node.span), "orphan": node.orphan, "children": [node_json(child) for child in node.children]}


def summary_json(summary: TraceSummary) -> dict[str, Any]:
    return {
        "traceId": summary.trace_id,
        "name": summary.name,
        "service": summary.service,
        "rootReceived": summary.root is not None,
        "services": summary.services,
        "spanCount": summary.span_count,
        "errorCount": summary.error_count,
        "start": summary.start,
        "duration": summary.duration,
    }


# -- HTTP -----------------------------------------------------------------------------------------------------------


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _encoded(message: Message, media_type: str, status: int = 200) -> Response:
    if media_type == PROTOBUF:
        return Response(message.SerializeToString(), status_code=status, media_type=PROTOBUF)
    return Response(json_format.MessageToJson(message, indent=None), status_code=status, media_type=JSON)


async def _read_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large()
    return bytes(body)


def create_app(store: SpanStore) -> Starlette:
    """The receiver and the viewer, over one :class:`SpanStore`."""

    async def export(request: Request) -> Response:
        media_type = _media_type(request)
        try:
            if media_type not in (PROTOBUF, JSON):
                raise Refused(415, code_pb2.INVALID_ARGUMENT, f"Content-Type must be {PROTOBUF} or {JSON}")
            encoding = request.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ENCODINGS:
                raise Refused(415, code_pb2.INVALID_ARGUMENT, "Content-Encoding must be gzip, deflate or identity")
            body = decompress(await _read_body(request, MAX_BODY_BYTES), encoding)
            spans, refused = spans_of(decode_request(body, media_type))
        except Refused as exc:
            return _encoded(status_pb2.Status(code=exc.code, message=exc.message), media_type, exc.status)
        store.add(spans)
        answer = ExportTraceServiceResponse()
        if refused:
            answer.partial_success.rejected_spans = refused
            answer.partial_success.error_message = "spans need a 16-byte trace id and an 8-byte span id, not all zero"
        return _encoded(answer, media_type)

    def list_query(request: Request) -> tuple[str | None, str | None]:
        return request.query_params.get("service") or None, request.query_params.get("q") or None

    async def api_traces(request: Request) -> Response:
        service, text = list_query(request)
        try:
            limit = int(request.query_params.get("limit", LIST_LIMIT))
        except ValueError:
            return JSONResponse(error_body([{"message": "limit must be a number", "field": "limit"}]), 400)
        limit = min(max(limit, 1), MAX_LIST_LIMIT)
        found = recent_traces(store.traces(), service=service, text=text, limit=limit)
        return JSONResponse({"traces": [summary_json(summary) for summary in found]})

    async def api_trace(request: Request) -> Response:
        trace_id = request.path_params["trace_id"].lower()
        spans = store.trace(trace_id)
        if not spans:
            return JSONResponse(error_body([{"message": f"No trace {trace_id[:64]} is kept"}]), 404)
        return JSONResponse(
            {
                "trace": summary_json(summarize(trace_id, spans)),
                "roots": [node_json(node) for node in span_tree(spans)],
            }
        )

    async def list_page(request: Request) -> Response:
        service, text = list_query(request)
        traces = store.traces()
        services = sorted({span.service for spans in traces.values() for span in spans})
        found = recent_traces(traces, service=service, text=text, limit=LIST_LIMIT)
        page = trace_pages.list_page(found, services=services, service=service, text=text, kept=len(store))
        return _html(page)

    async def trace_page(request: Request) -> Response:
        trace_id = request.path_params["trace_id"].lower()
        spans = store.trace(trace_id)
        if not spans:
            return _html(trace_pages.missing_page(trace_id), 404)
        return _html(trace_pages.trace_page(summarize(trace_id, spans), list(walk(span_tree(spans)))))

    return Starlette(
        routes=[
            Route("/v1/traces", export, methods=["POST"]),
            Route("/", list_page),
            Route("/traces/{trace_id}", trace_page),
            Route("/api/traces", api_traces),
            Route("/api/traces/{trace_id}", api_trace),
        ]
    )


CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"


def _html(page: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(page, status_code=status, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


# -- the server -----------------------------------------------------------------------------------------------------


class OtlpReceiver:
    """An OTLP/HTTP trace receiver and its viewer, served from a thread of its own (so an exporter that blocks the
    caller's event loop, such as ``SimpleSpanProcessor``'s, cannot stall it).

    ``async with OtlpReceiver(port=0) as receiver:`` (or plain ``with``) serves on a free port until the block ends;
    point an ``OTLPSpanExporter`` at ``receiver.endpoint + "/v1/traces"`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT`` at
    ``receiver.endpoint``). ``viewer_port`` also serves everything on a second port (0: a free one).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_OTLP_PORT,
        viewer_port: int | None = None,
        max_spans: int = DEFAULT_MAX_SPANS,
    ) -> None:
        self.host = host
        self.port = port
        self.viewer_port = viewer_port
        self.store = SpanStore(max_spans)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._failure: BaseException | None = None

    # -- lifecycle

    def start(self, timeout: float = 10.0) -> None:
        """Listen (``OSError`` if a port is taken) and serve from a background thread."""
        if self._thread is not None:
            raise RuntimeError("the receiver is already running")
        self._sockets = [self._bind(self.port)]
        self.port = self._sockets[0].getsockname()[1]
        if self.viewer_port == self.port:
            self.viewer_port = None  # one port serves both
        if self.viewer_port is not None:
            try:
                self._sockets.append(self._bind(self.viewer_port))
            except OSError:
                self._close_sockets()
                raise
            self.viewer_port = self._sockets[1].getsockname()[1]
        server = uvicorn.Server(server_config(create_app(self.store), host=self.host, port=self.port, lifespan="off"))
        self._server, self._failure = server, None
        self._thread = threading.Thread(target=self._serve, args=(server,), name="otlp-receiver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the OTLP receiver did not start: {self._failure!r}")
            time.sleep(0.005)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def _serve(self, server: uvicorn.Server) -> None:
        try:
            asyncio.run(server.serve(sockets=self._sockets))
        except BaseException as exc:
            self._failure = exc

    def stop(self, timeout: float = 15.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = self._thread = None
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def __enter__(self) -> OtlpReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> OtlpReceiver:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- addresses

    @property
    def endpoint(self) -> str:
        """What ``OTEL_EXPORTER_OTLP_ENDPOINT`` should say: the base URL, without ``/v1/traces``."""
        return f"http://{self._address()}:{self.port}"

    @property
    def viewer_url(self) -> str:
        return f"http://{self._address()}:{self.port if self.viewer_port is None else self.viewer_port}"

    def _address(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host

    # -- what arrived

    @property
    def spans(self) -> list[Span]:
        return self.store.spans()

    def traces(self) -> dict[str, list[Span]]:
        """trace id -> its spans."""
        return self.store.traces()

    def trace(self, trace_id: str) -> list[Span]:
        return self.store.trace(trace_id)

    def clear(self) -> None:
        self.store.clear()

    async def wait_for(self, predicate: Callable[[list[Span]], bool], timeout: float = 10.0) -> list[Span]:
        """Wait until ``predicate(receiver.spans)`` holds and return those spans; :class:`TimeoutError` (naming what
        did arrive) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        version = -1
        while True:
            if self.store.version != version:
                version = self.store.version
                spans = self.store.spans()
                if predicate(spans):
                    return spans
            if time.monotonic() >= deadline:
                raise TimeoutError(_timeout_message(self.store.spans(), timeout))
            await asyncio.sleep(0.01)

    def wait_for_blocking(self, predicate: Callable[[list[Span]], bool], timeout: float = 10.0) -> list[Span]:
        """:meth:`wait_for` for a thread without an event loop."""
        return self.store.wait(predicate, timeout)


def serve_until_signalled(receiver: OtlpReceiver, announce: Callable[[str], None] = print) -> int:
    """``ticketing traces``: serve until SIGINT or SIGTERM."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        receiver.start()
    except OSError as exc:
        ports = f"{receiver.port}" + (f" and {receiver.viewer_port}" if receiver.viewer_port is not None else "")
        announce(f"ticketing traces: cannot listen on {receiver.host} port {ports}: {exc}")
        return 1
    announce(
        f"traces: viewer on {receiver.viewer_url}, OTLP/HTTP on {receiver.endpoint}/v1/traces "
        f"(keeps the last {receiver.store.max_spans} spans)"
    )
    with contextlib.suppress(KeyboardInterrupt):
        while not stopping.wait(0.5):
            pass
    receiver.stop()
    return 0
