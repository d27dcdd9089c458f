"""The trace viewer: an OTLP/HTTP receiver that takes what OpenTelemetry's SDK exports (protobuf or JSON, plain or
compressed), keeps it by trace, shows it as pages and JSON, and the launcher that points every component at it."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ticketing_common.embedded import free_port
from ticketing_launcher.stack import SERVICES, ProcessComponent, Stack
from ticketing_launcher.traces import OtlpReceiver, Span

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver(port=0) as running:
        yield running


@contextmanager
def sdk_tracer(receiver: OtlpReceiver, service: str, *, compression: Compression | None = None) -> Iterator[Tracer]:
    """A tracer of the OpenTelemetry SDK, as a service sets it up, exporting to ``receiver``; flushed on exit."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces", compression=compression, timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    try:
        yield provider.get_tracer("ticketing.tests")
    finally:
        provider.shutdown()


def hex_id(number: int, digits: int) -> str:
    return format(number, f"0{digits}x")


def otlp_json(service: str, *spans: dict[str, Any]) -> dict[str, Any]:
    """An export in the OTLP JSON encoding (ids in hex, enums as integers, 64-bit integers as strings)."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "handwritten"}, "spans": list(spans)}],
            }
        ]
    }


def json_span(trace_id: str, span_id: str, name: str, *, parent: str | None = None, start: int = 0) -> dict[str, Any]:
    started = 1_700_000_000_000_000_000 + start
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(started),
        "endTimeUnixNano": str(started + 1_500_000),
    }
    if parent is not None:
        span["parentSpanId"] = parent
    return span


def post_json(receiver: OtlpReceiver, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{receiver.endpoint}/v1/traces", json=body, timeout=5)


TRACE = "5b8efff798038103d269b633813fc60c"


# -- receiving what the SDK sends -------------------------------------------------------------------------------------


async def test_keeps_parent_links_of_spans_sent_by_the_sdk(receiver: OtlpReceiver) -> None:
    propagator = TraceContextTextMapPropagator()
    carrier: dict[str, str] = {}
    with sdk_tracer(receiver, "orders") as orders, sdk_tracer(receiver, "tickets") as tickets:
        with (
            orders.start_as_current_span("POST /api/orders", kind=SpanKind.SERVER) as request,
            orders.start_as_current_span("order.created publish", kind=SpanKind.PRODUCER),
        ):
            propagator.inject(carrier)  # the event's headers carry the trace to the next service
        with (
            tickets.start_as_current_span(
                "order.created process", context=propagator.extract(carrier), kind=SpanKind.CONSUMER
            ),
            tickets.start_as_current_span("UPDATE tickets", kind=SpanKind.CLIENT),
        ):
            pass

    spans = await receiver.wait_for(lambda spans: len(spans) == 4)

    by_name = {span.name: span for span in spans}
    root = by_name["POST /api/orders"]
    assert root.trace_id == hex_id(request.get_span_context().trace_id, 32)
    assert root.span_id == hex_id(request.get_span_context().span_id, 16)
    assert root.parent_span_id is None
    assert by_name["order.created publish"].parent_span_id == root.span_id
    assert by_name["order.created process"].parent_span_id == by_name["order.created publish"].span_id
    assert by_name["UPDATE tickets"].parent_span_id == by_name["order.created process"].span_id
    assert list(receiver.traces()) == [root.trace_id]
    assert {(span.name, span.service, span.kind) for span in receiver.trace(root.trace_id)} == {
        ("POST /api/orders", "orders", "server"),
        ("order.created publish", "orders", "producer"),
        ("order.created process", "tickets", "consumer"),
        ("UPDATE tickets", "tickets", "client"),
    }


async def test_keeps_attributes_status_events_links_and_times_of_sdk_spans(receiver: OtlpReceiver) -> None:
    attributes = {"order.id": "o-1", "amount": 1999, "ratio": 0.5, "retried": True, "cards": ("visa", "amex")}
    with sdk_tracer(receiver, "payments") as tracer:
        with tracer.start_as_current_span("charge", attributes=attributes) as charge:
            charge.add_event("stripe answered", {"http.response.status_code": 402})
            charge.set_status(Status(StatusCode.ERROR, "card declined"))
        with tracer.start_as_current_span("refund", links=[Link(charge.get_span_context())]):
            pass

    spans = await receiver.wait_for(lambda spans: {span.name for span in spans} == {"charge", "refund"})

    received = {span.name: span for span in spans}["charge"]
    sent = charge  # a ReadableSpan once ended
    assert received.service == "payments"
    assert received.scope == "ticketing.tests"
    assert received.attributes == {**attributes, "cards": ["visa", "amex"]}
    assert (received.status, received.status_message) == ("error", "card declined")
    assert (received.start, received.end) == (sent.start_time, sent.end_time)  # type: ignore[attr-defined]
    assert received.duration == sent.end_time - sent.start_time  # type: ignore[attr-defined]
    [event] = received.events
    assert (event.name, event.attributes) == ("stripe answered", {"http.response.status_code": 402})
    assert received.start <= event.time <= received.end
    refund = {span.name: span for span in spans}["refund"]
    assert refund.links == [(received.trace_id, received.span_id)]
    assert refund.trace_id != received.trace_id


async def test_takes_gzip_compressed_exports_from_the_sdk(receiver: OtlpReceiver) -> None:
    with (
        sdk_tracer(receiver, "queue", compression=Compression.Gzip) as tracer,
        tracer.start_as_current_span("queue.draw-due process"),
    ):
        pass

    [span] = await receiver.wait_for(lambda spans: len(spans) == 1)

    assert (span.name, span.service) == ("queue.draw-due process", "queue")


def test_serves_a_thread_without_an_event_loop_and_an_exporter_that_blocks_it() -> None:
    with OtlpReceiver(port=0) as receiver:
        provider = TracerProvider(resource=Resource.create({"service.name": "auth"}))
        exporter = OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces", timeout=5)
        provider.add_span_processor(SimpleSpanProcessor(exporter))  # exports inside span.end(), blocking
        with provider.get_tracer("t").start_as_current_span("POST /api/users/signin"):
            pass

        [span] = receiver.wait_for_blocking(lambda spans: len(spans) == 1, timeout=5)
        provider.shutdown()

    assert span.name == "POST /api/users/signin"


# -- the OTLP/HTTP protocol -----------------------------------------------------------------------------------------


async def test_decodes_the_otlp_json_encoding_and_answers_in_json(receiver: OtlpReceiver) -> None:
    root = json_span(TRACE, "eee19b7ec3c1b174", "queue.admitted publish")
    root["attributes"] = [
        {"key": "event.id", "value": {"stringValue": "e-1"}},
        {"key": "admitted", "value": {"intValue": "50"}},
        {"key": "late", "value": {"boolValue": False}},
        {"key": "ratio", "value": {"doubleValue": "NaN"}},
    ]
    root["status"] = {"code": 1}
    child = json_span(TRACE, "eee19b7ec3c1b173", "admit", parent="eee19b7ec3c1b174", start=10)
    child["links"] = [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}]

    answer = post_json(receiver, otlp_json("queue", root, child))

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {}
    assert receiver.trace(TRACE) == [
        Span(
            trace_id=TRACE,
            span_id="eee19b7ec3c1b174",
            parent_span_id=None,
            name="queue.admitted publish",
            kind="server",
            service="queue",
            start=1_700_000_000_000_000_000,
            end=1_700_000_000_001_500_000,
            status="ok",
            attributes={"event.id": "e-1", "admitted": 50, "late": False, "ratio": "nan"},
            scope="handwritten",
        ),
        Span(
            trace_id=TRACE,
            span_id="eee19b7ec3c1b173",
            parent_span_id="eee19b7ec3c1b174",
            name="admit",
            kind="server",
            service="queue",
            start=1_700_000_000_000_000_010,
            end=1_700_000_000_001_500_010,
            links=[("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")],
            scope="handwritten",
        ),
    ]
    assert httpx.get(f"{receiver.viewer_url}/api/traces/{TRACE}").json()["roots"][0]["attributes"]["ratio"] == "nan"


def proto_export(*spans: ProtoSpan, service: str = "orders") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])])
    attribute = request.resource_spans[0].resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", service
    return request


async def test_answers_a_protobuf_export_with_a_protobuf_response_counting_spans_without_ids(
    receiver: OtlpReceiver,
) -> None:
    good = ProtoSpan(trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex("eee19b7ec3c1b174"), name="ok")
    without_ids = ProtoSpan(name="no ids")

    answer = httpx.post(
        f"{receiver.endpoint}/v1/traces", content=proto_export(good, without_ids).SerializeToString(), headers=PROTOBUF
    )

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_spans == 1
    assert [span.name for span in receiver.spans] == ["ok"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_takes_compressed_bodies_in_either_encoding(receiver: OtlpReceiver, encoding: str) -> None:
    body = json.dumps(otlp_json("orders", json_span(TRACE, "eee19b7ec3c1b174", "compressed"))).encode()
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)

    answer = httpx.post(
        f"{receiver.endpoint}/v1/traces",
        content=packed,
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )

    assert answer.status_code == 200
    assert [span.name for span in receiver.spans] == ["compressed"]


async def test_keeps_a_span_sent_twice_once(receiver: OtlpReceiver) -> None:
    export = otlp_json("orders", json_span(TRACE, "eee19b7ec3c1b174", "retried"))

    assert post_json(receiver, export).status_code == 200
    assert post_json(receiver, export).status_code == 200

    assert [span.name for span in receiver.spans] == ["retried"]


def bad_hex_id() -> bytes:
    return json.dumps(otlp_json("orders", json_span("not-a-hex-trace-id", "eee19b7ec3c1b174", "x"))).encode()


BAD_BODIES = {
    "protobuf that is not an export": ("application/x-protobuf", None, b"this is not protobuf"),
    "JSON that does not parse": ("application/json", None, b'{"resourceSpans": ['),
    "JSON that is not an object": ("application/json", None, b"[]"),
    "JSON with a trace id that is not hex": ("application/json", None, bad_hex_id()),
    "JSON of the wrong shape": ("application/json", None, b'{"resourceSpans": "all of them"}'),
    "gzip that is not gzip": ("application/x-protobuf", "gzip", b"plain bytes"),
    "gzip cut short": ("application/json", "gzip", gzip.compress(bad_hex_id())[:20]),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_refuses_a_body_that_does_not_decode_with_400_and_keeps_nothing(
    receiver: OtlpReceiver, case: str
) -> None:
    content_type, encoding, body = BAD_BODIES[case]
    headers = {"Content-Type": content_type, **({"Content-Encoding": encoding} if encoding else {})}

    answer = httpx.post(f"{receiver.endpoint}/v1/traces", content=body, headers=headers)

    assert answer.status_code == 400
    if content_type == "application/json":
        assert answer.json()["message"]
    else:
        assert status_pb2.Status.FromString(answer.content).message
    assert receiver.spans == []


async def test_answers_404_to_other_paths_and_415_to_other_content_types_or_encodings(
    receiver: OtlpReceiver,
) -> None:
    export = proto_export(ProtoSpan(trace_id=bytes.fromhex(TRACE), span_id=b"\x01" * 8)).SerializeToString()
    url = f"{receiver.endpoint}/v1/traces"

    assert httpx.post(f"{receiver.endpoint}/v1/metrics", content=export, headers=PROTOBUF).status_code == 404
    assert httpx.post(url, content=export, headers={"Content-Type": "text/plain"}).status_code == 415
    assert httpx.post(url, content=export).status_code == 415
    assert httpx.post(url, content=export, headers={**PROTOBUF, "Content-Encoding": "br"}).status_code == 415
    assert receiver.spans == []


def test_drops_the_traces_that_received_a_span_least_recently_beyond_its_span_limit() -> None:
    first, second, third = (hex_id(n, 32) for n in (1, 2, 3))
    with OtlpReceiver(port=0, max_spans=5) as receiver:
        post_json(receiver, otlp_json("orders", json_span(first, "01" * 8, "a"), json_span(first, "02" * 8, "b")))
        post_json(receiver, otlp_json("orders", json_span(second, "03" * 8, "c"), json_span(second, "04" * 8, "d")))
        post_json(receiver, otlp_json("orders", json_span(first, "05" * 8, "e")))  # the first trace is busy again
        post_json(receiver, otlp_json("orders", json_span(third, "06" * 8, "f"), json_span(third, "07" * 8, "g")))

        assert set(receiver.traces()) == {first, third}
        assert len(receiver.spans) == 5


async def test_wait_for_gives_up_naming_what_did_arrive(receiver: OtlpReceiver) -> None:
    post_json(receiver, otlp_json("orders", json_span(TRACE, "eee19b7ec3c1b174", "POST /api/orders")))

    with pytest.raises(TimeoutError, match=r"1 received \(orders: POST /api/orders\)"):
        await receiver.wait_for(lambda spans: len(spans) == 2, timeout=0.2)


# -- the viewer -----------------------------------------------------------------------------------------------------


def send_purchase_and_listing(receiver: OtlpReceiver) -> tuple[str, str]:
    """Two traces through the SDK: a ticket listing, then a purchase across orders and payments. Their trace ids."""
    with (
        sdk_tracer(receiver, "tickets") as tickets,
        tickets.start_as_current_span("GET /api/tickets", kind=SpanKind.SERVER) as listing,
    ):
        pass
    propagator = TraceContextTextMapPropagator()
    carrier: dict[str, str] = {}
    with sdk_tracer(receiver, "orders") as orders, sdk_tracer(receiver, "payments") as payments:
        with orders.start_as_current_span("POST /api/orders", kind=SpanKind.SERVER) as purchase:
            purchase.set_attribute("order.id", "o-42")
            with orders.start_as_current_span("INSERT orders <and outbox>", kind=SpanKind.CLIENT):
                propagator.inject(carrier)
        with payments.start_as_current_span("order.created process", context=propagator.extract(carrier)):
            pass
    return hex_id(listing.get_span_context().trace_id, 32), hex_id(purchase.get_span_context().trace_id, 32)


async def test_lists_recent_traces_newest_first_with_their_services_span_counts_and_durations(
    receiver: OtlpReceiver,
) -> None:
    listing, purchase = send_purchase_and_listing(receiver)
    await receiver.wait_for(lambda spans: len(spans) == 4)

    page = httpx.get(receiver.viewer_url + "/")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert html.index(f'href="/traces/{purchase}"') < html.index(f'href="/traces/{listing}"')  # newest first
    row = re.search(rf'<tr>.*?href="/traces/{purchase}".*?</tr>', html)
    assert row is not None
    assert "POST /api/orders" in row[0]
    assert ">orders<" in row[0]
    assert ">payments<" in row[0]
    assert '<td class="num">3</td>' in row[0]
    assert re.search(r'<td class="num">[\d.]+ (ns|µs|ms|s)</td>', row[0])


async def test_filters_the_list_by_service_and_by_text(receiver: OtlpReceiver) -> None:
    listing, purchase = send_purchase_and_listing(receiver)
    await receiver.wait_for(lambda spans: len(spans) == 4)

    by_service = httpx.get(receiver.viewer_url + "/", params={"service": "tickets"}).text
    by_attribute = httpx.get(receiver.viewer_url + "/", params={"q": "O-42"}).text
    by_nothing = httpx.get(receiver.viewer_url + "/", params={"q": "no such text"}).text

    assert f"/traces/{listing}" in by_service
    assert f"/traces/{purchase}" not in by_service
    assert f"/traces/{purchase}" in by_attribute
    assert f"/traces/{listing}" not in by_attribute
    assert "No trace matches" in by_nothing


async def test_shows_a_trace_as_a_waterfall_of_spans_nested_by_parent(receiver: OtlpReceiver) -> None:
    _, purchase = send_purchase_and_listing(receiver)
    await receiver.wait_for(lambda spans: len(spans) == 4)

    page = httpx.get(f"{receiver.viewer_url}/traces/{purchase}")

    assert page.status_code == 200
    rows = re.findall(r'<details class="span" data-depth="(\d+)".*?</details>', page.text, flags=re.S)
    assert rows == ["0", "1", "2"]
    html = page.text
    order = [
        html.index(name) for name in ("POST /api/orders", "INSERT orders &lt;and outbox&gt;", "order.created process")
    ]
    assert order == sorted(order)
    assert "<and outbox>" not in html  # span data is escaped
    assert ">payments<" in html
    assert "o-42" in html  # attributes are on the page, shown on click
    bars = [
        (float(left), float(width))
        for left, width in re.findall(r'class="bar" style="left:([\d.]+)%;width:([\d.]+)%', html)
    ]
    assert bars[0][0] == 0  # the root starts the trace
    assert max(left + width for left, width in bars) == pytest.approx(100, abs=0.01)  # the last span ends it
    assert all(left > 0 for left, _ in bars[1:])
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_answers_404_for_a_trace_it_does_not_hold(receiver: OtlpReceiver) -> None:
    assert httpx.get(f"{receiver.viewer_url}/traces/{TRACE}").status_code == 404
    answer = httpx.get(f"{receiver.viewer_url}/api/traces/{TRACE}")
    assert answer.status_code == 404
    assert answer.json()["errors"][0]["message"]


async def test_json_api_lists_traces_and_returns_one_as_a_tree(receiver: OtlpReceiver) -> None:
    listing, purchase = send_purchase_and_listing(receiver)
    await receiver.wait_for(lambda spans: len(spans) == 4)

    traces = httpx.get(receiver.viewer_url + "/api/traces").json()["traces"]
    tree = httpx.get(f"{receiver.viewer_url}/api/traces/{purchase}").json()

    assert [(t["traceId"], t["name"], t["services"], t["spanCount"]) for t in traces] == [
        (purchase, "POST /api/orders", ["orders", "payments"], 3),
        (listing, "GET /api/tickets", ["tickets"], 1),
    ]
    assert tree["trace"]["traceId"] == purchase
    [root] = tree["roots"]
    assert (root["name"], root["service"], root["kind"]) == ("POST /api/orders", "orders", "server")
    assert root["attributes"] == {"order.id": "o-42"}
    [insert] = root["children"]
    assert insert["name"] == "INSERT orders <and outbox>"
    assert [child["name"] for child in insert["children"]] == ["order.created process"]
    assert insert["children"][0]["service"] == "payments"
    only_tickets = httpx.get(receiver.viewer_url + "/api/traces", params={"service": "tickets"}).json()["traces"]
    assert [t["traceId"] for t in only_tickets] == [listing]


def test_shows_a_trace_whose_root_span_has_not_arrived_yet() -> None:
    with OtlpReceiver(port=0) as receiver:
        post_json(receiver, otlp_json("orders", json_span(TRACE, "01" * 8, "child", parent="02" * 8)))

        listed = httpx.get(receiver.viewer_url + "/").text
        tree = httpx.get(f"{receiver.viewer_url}/api/traces/{TRACE}").json()

    assert "root span not received yet" in listed
    assert tree["trace"]["rootReceived"] is False
    assert [(root["name"], root["orphan"]) for root in tree["roots"]] == [("child", True)]


def test_serves_the_viewer_on_a_port_of_its_own_too() -> None:
    with OtlpReceiver(port=0, viewer_port=0) as receiver:
        post_json(receiver, otlp_json("orders", json_span(TRACE, "01" * 8, "POST /api/orders")))

        assert receiver.viewer_url != receiver.endpoint
        assert "POST /api/orders" in httpx.get(receiver.viewer_url + "/").text


# -- the launcher ---------------------------------------------------------------------------------------------------


def planned_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, traces: bool, **environ: str) -> Stack:
    """A stack whose components are planned but not started (their environments are what is under test)."""
    monkeypatch.setattr(ProcessComponent, "start", lambda self: None)
    environ = {"PATH": "/usr/bin", "SESSION_KEY_FILE": str(tmp_path / "keys.json"), **environ}
    stack = Stack(state_dir=tmp_path, environ=environ, log_sink=None, traces=traces)
    stack.urls.update(database="postgresql://postgres@127.0.0.1:5432/postgres", nats="nats://127.0.0.1:4222")
    stack.start_services()
    return stack


def trace_endpoints(stack: Stack) -> dict[str, str | None]:
    environments = {name: component.env for name, component in stack.components.items()}
    environments["migrations"] = stack._base_env()
    return {name: env.get("OTEL_EXPORTER_OTLP_ENDPOINT") for name, env in environments.items()}


EVERY_COMPONENT = {"stripe", *(spec.name for spec in SERVICES), "gateway", "migrations"}


def test_up_with_traces_points_every_component_at_the_built_in_receiver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = planned_stack(tmp_path, monkeypatch, traces=True)

    assert stack.runs_trace_viewer
    assert trace_endpoints(stack) == dict.fromkeys(EVERY_COMPONENT, "http://127.0.0.1:4318")


def test_up_passes_a_collector_the_user_set_through_and_runs_no_viewer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = planned_stack(tmp_path, monkeypatch, traces=True, OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger.example:4318")

    stack.start_traces()

    assert trace_endpoints(stack) == dict.fromkeys(EVERY_COMPONENT, "http://jaeger.example:4318")
    assert not stack.runs_trace_viewer
    assert "traces" not in stack.components
    assert "sent to http://jaeger.example:4318" in stack.describe()


def test_up_without_traces_sets_no_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = planned_stack(tmp_path, monkeypatch, traces=False)

    assert trace_endpoints(stack) == dict.fromkeys(EVERY_COMPONENT)


def test_up_with_traces_runs_the_viewer_beside_the_system_and_names_its_address(tmp_path: Path) -> None:
    stack = Stack(state_dir=tmp_path, log_sink=None, traces=True, otlp_port=free_port(), viewer_port=free_port())
    try:
        stack.start_traces()
        exported = httpx.post(
            f"http://127.0.0.1:{stack.otlp_port}/v1/traces",
            json=otlp_json("orders", json_span(TRACE, "01" * 8, "POST /api/orders")),
        )
        viewer = httpx.get(f"http://127.0.0.1:{stack.viewer_port}/")
        stack.urls["gateway"] = "http://127.0.0.1:8080"
        described = stack.describe()
    finally:
        stack.stop()

    assert exported.status_code == 200
    assert "POST /api/orders" in viewer.text
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in stack.components["traces"].env  # the viewer sends no spans itself
    assert f"open http://127.0.0.1:{stack.viewer_port}" in described
    assert not stack.components["traces"].running()
