"""The whole system as `make up` runs it, driven through the gateway like a real client would.

One stack for the module (starting it takes a few seconds); each test uses fresh users. It runs traced, as
`make up TRACES=1` does, into an OTLP receiver in this process: a purchase must be one trace.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ticketing_launcher.check import check_until_settled
from ticketing_launcher.stack import Stack, isolated_environ, throwaway_stack
from ticketing_launcher.traces import OtlpReceiver, Span

pytestmark = pytest.mark.e2e

ORDER_WINDOW_SECONDS = 4
T = TypeVar("T")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver(port=0) as spans:
        yield spans


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[Stack]:
    environ = isolated_environ(
        ORDER_EXPIRATION_SECONDS=str(ORDER_WINDOW_SECONDS), OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint
    )
    log_file = Path(tmp_path_factory.mktemp("logs")) / "system.log"
    with log_file.open("w") as sink, throwaway_stack(environ, log_sink=sink, prefix="ticketing-system-") as system:
        yield system


def _user(stack: Stack) -> httpx.Client:
    client = httpx.Client(base_url=stack.urls["gateway"], timeout=10)
    response = client.post(
        "/api/users/signup", json={"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse"}
    )
    assert response.status_code == 201, response.text
    return client


def _eventually(check: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not reached within {timeout}s"
        time.sleep(0.05)


def _ticket(client: httpx.Client, ticket_id: str) -> dict[str, Any]:
    response = client.get(f"/api/tickets/{ticket_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _order(client: httpx.Client, order_id: str) -> dict[str, Any]:
    response = client.get(f"/api/orders/{order_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _orderable(buyer: httpx.Client, ticket_id: str, *, traceparent: str | None = None) -> httpx.Response | None:
    """Order the ticket as soon as the orders service has its copy (events take milliseconds)."""
    headers = {"traceparent": traceparent} if traceparent else {}
    response = buyer.post("/api/orders", json={"ticketId": ticket_id}, headers=headers)
    return response if response.status_code != 404 else None


def _payable(buyer: httpx.Client, order_id: str) -> httpx.Response | None:
    """Pay as soon as the payments service has its copy of the order."""
    response = buyer.post("/api/payments", json={"orderId": order_id, "token": "tok_visa"})
    return response if response.status_code != 404 else None


def test_a_ticket_is_sold_paid_and_stays_sold(stack: Stack) -> None:
    seller, buyer = _user(stack), _user(stack)
    ticket = seller.post("/api/tickets", json={"title": "Concert", "price": 19.99}).json()

    order_response = _eventually(lambda: _orderable(buyer, ticket["id"]))
    assert order_response.status_code == 201, order_response.text
    order = order_response.json()
    assert order["status"] == "created"
    assert order["ticket"]["price"] == 19.99

    held = _eventually(lambda: _ticket(seller, ticket["id"]) if _ticket(seller, ticket["id"])["orderId"] else None)
    assert held["orderId"] == order["id"]
    listed = seller.get("/api/tickets").json()["tickets"]
    assert ticket["id"] not in [t["id"] for t in listed]
    assert seller.put(f"/api/tickets/{ticket['id']}", json={"title": "x", "price": 1}).status_code == 400

    payment = _eventually(lambda: _payable(buyer, order["id"]))
    assert payment.status_code == 201, payment.text
    assert payment.json()["amount"] == 1999

    complete = _eventually(lambda: o if (o := _order(buyer, order["id"]))["status"] == "complete" else None)
    assert complete["status"] == "complete"
    time.sleep(ORDER_WINDOW_SECONDS + 1)  # the expiry fires for a paid order and changes nothing
    assert _order(buyer, order["id"])["status"] == "complete"
    assert _ticket(seller, ticket["id"])["orderId"] == order["id"]
    again = buyer.post("/api/payments", json={"orderId": order["id"], "token": "tok_visa"})
    assert again.status_code == 400


def test_an_unpaid_order_expires_and_the_ticket_is_for_sale_again(stack: Stack) -> None:
    seller, buyer = _user(stack), _user(stack)
    ticket = seller.post("/api/tickets", json={"title": "Play", "price": 5}).json()
    order = _eventually(lambda: _orderable(buyer, ticket["id"])).json()

    cancelled = _eventually(
        lambda: o if (o := _order(buyer, order["id"]))["status"] == "cancelled" else None,
        timeout=ORDER_WINDOW_SECONDS + 10,
    )
    assert cancelled["version"] == 1
    freed = _eventually(lambda: t if (t := _ticket(seller, ticket["id"]))["orderId"] is None else None)
    assert freed["version"] == 2  # held (1), freed (2)
    declined = buyer.post("/api/payments", json={"orderId": order["id"], "token": "tok_visa"})
    assert declined.status_code == 400
    second_buyer = _user(stack)
    assert _eventually(lambda: _orderable(second_buyer, ticket["id"])).status_code == 201


async def test_the_checker_finds_the_system_consistent_once_quiet(stack: Stack) -> None:
    report = await check_until_settled(settle=20, database_url=stack.urls["database"], nats_url=stack.urls["nats"])
    assert report.ok, report.render()
    assert report.counts["orders"] >= 3
    assert report.counts["payments"] >= 1


@dataclass(frozen=True)
class Caller:
    """The trace context a test sends, as a caller that traces itself would."""

    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    span_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


def _traced_order(buyer: httpx.Client, ticket_id: str, caller: Caller) -> str:
    response = _eventually(lambda: _orderable(buyer, ticket_id, traceparent=caller.traceparent))
    assert response.status_code == 201, response.text
    order_id: str = response.json()["id"]
    return order_id


def _trace_with(receiver: OtlpReceiver, caller: Caller, expected: set[tuple[str, str]]) -> list[Span]:
    """The caller's trace once it holds a span of each (service, name) in ``expected`` and every span's parent (each
    process exports on its own schedule)."""

    def complete(spans: list[Span]) -> bool:
        trace = [s for s in spans if s.trace_id == caller.trace_id]
        return expected <= {(s.service, s.name) for s in trace} and not _orphans(trace, caller)

    with contextlib.suppress(TimeoutError):  # the asserts below say what is missing
        receiver.wait_for_blocking(complete, timeout=20)
    trace = receiver.trace(caller.trace_id)
    assert expected - {(s.service, s.name) for s in trace} == set()
    assert _orphans(trace, caller) == []
    # Only the gateway's spans of the caller's requests (a 404 before the order's copy arrived, then the 201).
    assert {(s.service, s.name) for s in trace if s.parent_span_id == caller.span_id} == {
        ("gateway", "POST /api/orders")
    }
    return trace


def _orphans(trace: list[Span], caller: Caller) -> list[tuple[str, str]]:
    """The spans whose parent is neither in the trace nor the caller."""
    ids = {span.span_id for span in trace} | {caller.span_id}
    return [(s.service, s.name) for s in trace if s.parent_span_id not in ids]


ORDER_SPANS = {
    ("gateway", "POST /api/orders"),
    ("orders", "POST /api/orders"),
    ("tickets", "order.created process"),
    ("expiration", "order.created process"),
    ("payments", "order.created process"),
    ("orders", "ticket.updated process"),
}


def test_one_purchase_is_one_trace_from_the_order_through_its_events_and_its_payment(
    stack: Stack, receiver: OtlpReceiver
) -> None:
    seller, buyer = _user(stack), _user(stack)
    ticket = seller.post("/api/tickets", json={"title": "Traced", "price": 12}).json()
    caller = Caller()
    order_id = _traced_order(buyer, ticket["id"], caller)
    payment = _eventually(lambda: _payable(buyer, order_id))
    assert payment.status_code == 201, payment.text

    trace = _trace_with(
        receiver,
        caller,
        ORDER_SPANS | {("payments", "charge order"), ("orders", "charge.created process")},
    )
    # The payment request is a trace of its own; its charge joins the order's and links back to it.
    [charge] = [s for s in trace if s.name == "charge order"]
    [(linked_trace, linked_span)] = charge.links
    request = next(s for s in receiver.trace(linked_trace) if s.span_id == linked_span)
    assert (request.service, request.name) == ("payments", "POST /api/payments")
    placed = [s for s in trace if (s.service, s.name) == ("orders", "POST /api/orders")]
    assert sorted(s.attributes["http.response.status_code"] for s in placed) == [201] + [404] * (len(placed) - 1)
    consumers = [s for s in trace if s.kind == "consumer"]
    assert all(s.attributes["messaging.system"] == "nats" for s in consumers)


def test_an_expiry_is_part_of_its_orders_trace(stack: Stack, receiver: OtlpReceiver) -> None:
    seller, buyer = _user(stack), _user(stack)
    ticket = seller.post("/api/tickets", json={"title": "Traced expiry", "price": 3}).json()
    caller = Caller()
    _traced_order(buyer, ticket["id"], caller)

    trace = _trace_with(
        receiver,
        caller,
        ORDER_SPANS
        | {
            ("orders", "order.expired process"),
            ("tickets", "order.cancelled process"),
            ("payments", "order.cancelled process"),
        },
    )
    expired = next(s for s in trace if s.name == "order.expired process")
    scheduled_by = next(s for s in trace if s.span_id == expired.parent_span_id)
    assert (scheduled_by.service, scheduled_by.name) == ("expiration", "order.created process")
