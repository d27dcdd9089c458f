"""Traces through the shared library: a request's span continues its caller's trace, the events it stages carry
that trace in their headers, each listener handles each event in a span of the same trace, and log lines written
inside a span name it. Off by default: no span, no header."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from common_demo import DemoSettings, build_demo_app
from fastapi import FastAPI
from opentelemetry.trace import SpanKind

from ticketing_common import tracing
from ticketing_common.testing import RecordedSpans, http_client, recording_spans, running, wait_until

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def spans() -> Iterator[RecordedSpans]:
    with recording_spans("demo") as recorded:
        yield recorded


def _hex(number: int, width: int) -> str:
    return f"{number:0{width}x}"


async def _create_ticket(app: FastAPI, title: str, *, traceparent: str | None = None) -> uuid.UUID:
    headers = {"traceparent": traceparent} if traceparent else {}
    async with http_client(app) as client:
        response = await client.post("/demo/tickets", json={"title": title, "price": 10}, headers=headers)
    assert response.status_code == 201
    ticket_id = uuid.UUID(response.json()["id"])

    async def copied() -> bool:
        return await app.state.db.pool.fetchval("SELECT 1 FROM ticket_copies WHERE id = $1", ticket_id) is not None

    await wait_until(copied)
    return ticket_id


async def _outbox_headers(app: FastAPI) -> list[dict[str, str]]:
    rows = await app.state.db.pool.fetch("SELECT headers FROM outbox ORDER BY id")
    return [json.loads(row["headers"]) for row in rows]


async def test_a_request_continues_its_callers_trace_and_is_named_after_its_route(
    demo_settings: DemoSettings, spans: RecordedSpans
) -> None:
    async with running(build_demo_app(demo_settings)) as app:
        await _create_ticket(app, "Seat 1", traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")

    [server] = spans.named("POST /demo/tickets")
    assert server.kind == SpanKind.SERVER
    assert _hex(server.context.trace_id, 32) == CALLER_TRACE
    assert server.parent is not None
    assert _hex(server.parent.span_id, 16) == CALLER_SPAN
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/demo/tickets"
    assert server.attributes["http.response.status_code"] == 201
    assert server.resource.attributes["service.name"] == "demo"


async def test_the_event_a_request_stages_is_handled_in_a_child_span_of_that_request(
    demo_settings: DemoSettings, spans: RecordedSpans
) -> None:
    async with running(build_demo_app(demo_settings)) as app:
        await _create_ticket(app, "Seat 1")
        [headers] = await _outbox_headers(app)

    [server] = spans.named("POST /demo/tickets")
    [consumer] = spans.named("ticket.created process")
    _, trace_id, parent_id, _ = headers["traceparent"].split("-")
    assert (trace_id, parent_id) == (_hex(server.context.trace_id, 32), _hex(server.context.span_id, 16))
    assert consumer.kind == SpanKind.CONSUMER
    assert consumer.context.trace_id == server.context.trace_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == server.context.span_id
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.consumer.group.name"] == "demo-ticket-created"
    assert consumer.attributes["messaging.message.id"] == headers["ce-id"]


async def test_events_handled_in_one_batch_each_keep_their_own_trace(
    demo_settings: DemoSettings, spans: RecordedSpans
) -> None:
    callers = [uuid.uuid4().hex for _ in range(5)]
    async with running(build_demo_app(demo_settings)) as app, http_client(app) as client:
        for trace_id in callers:  # sent at once: the listener takes several in one batch when it can
            response = await client.post(
                "/demo/tickets",
                json={"title": "Seat", "price": 10},
                headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"},
            )
            assert response.status_code == 201

        async def all_copied() -> bool:
            return await app.state.db.pool.fetchval("SELECT count(*) FROM ticket_copies") == len(callers)

        await wait_until(all_copied)

    servers = {server.context.trace_id: server for server in spans.named("POST /demo/tickets")}
    consumers = spans.named("ticket.created process")
    assert sorted(_hex(span.context.trace_id, 32) for span in consumers) == sorted(callers)
    for consumer in consumers:
        assert consumer.parent is not None
        assert consumer.parent.span_id == servers[consumer.context.trace_id].context.span_id


async def test_a_failing_handler_marks_its_span_as_an_error(demo_settings: DemoSettings, spans: RecordedSpans) -> None:
    async with running(build_demo_app(demo_settings.model_copy(update={"event_max_deliveries": 1}))) as app:
        async with http_client(app) as client:
            assert (await client.post("/demo/tickets", json={"title": "poison", "price": 10})).status_code == 201

        async def parked() -> bool:
            return await app.state.db.pool.fetchval("SELECT count(*) FROM parked_messages") == 1

        await wait_until(parked)

    [consumer] = spans.named("ticket.created process")
    assert not consumer.status.is_ok
    assert [event.name for event in consumer.events] == ["exception"]


async def test_log_lines_written_inside_a_span_carry_its_trace_id(
    demo_settings: DemoSettings, spans: RecordedSpans, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(build_demo_app(demo_settings)) as app, http_client(app) as client:
        response = await client.get("/demo/errors/boom", headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    assert response.status_code == 500

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [unhandled] = [line for line in lines if line["message"] == "unhandled error"]
    [request] = [line for line in lines if line["message"] == "request"]
    [server] = spans.named("GET /demo/errors/{kind}")
    assert unhandled["trace_id"] == request["trace_id"] == CALLER_TRACE
    assert request["span_id"] == _hex(server.context.span_id, 16)
    assert not server.status.is_ok


async def test_tracing_is_off_without_an_endpoint_no_header_no_span_no_log_field(
    demo_settings: DemoSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tracing.tracer is None
    async with running(build_demo_app(demo_settings)) as app:
        await _create_ticket(app, "Seat 1", traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
        async with http_client(app) as client:
            assert (await client.get("/demo/errors/database")).status_code == 503
        [headers] = await _outbox_headers(app)

    assert "traceparent" not in headers
    assert tracing.tracer is None
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line for line in lines if line["message"] == "request"]
    assert not [line for line in lines if "trace_id" in line]


async def test_probes_and_scrapes_make_no_spans(demo_settings: DemoSettings, spans: RecordedSpans) -> None:
    async with running(build_demo_app(demo_settings)) as app, http_client(app) as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200
        assert (await client.get("/demo/errors/not-found")).status_code == 404

    assert [span.name for span in spans.finished()] == ["GET /demo/errors/{kind}"]


async def test_an_unsampled_callers_trace_is_passed_on_but_nothing_is_recorded(
    demo_settings: DemoSettings, spans: RecordedSpans
) -> None:
    async with running(build_demo_app(demo_settings)) as app:
        await _create_ticket(app, "Seat 1", traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-00")
        [headers] = await _outbox_headers(app)

    _, trace_id, _, flags = headers["traceparent"].split("-")
    assert (trace_id, flags) == (CALLER_TRACE, "00")
    assert spans.finished() == []
