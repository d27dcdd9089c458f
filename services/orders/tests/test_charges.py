"""charge.created: the charge pays the order (complete, version + 1); a charge that cannot pay its order is
recorded and logged as needing a refund, never dropped."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

from ticketing_common.events import ChargeCreated, OrderExpired
from ticketing_common.testing import running, signin, wait_until
from ticketing_orders.config import Settings
from ticketing_orders.main import create_app

if TYPE_CHECKING:
    from conftest import Harness

    from ticketing_orders.queries import Order


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warnings_logged() -> Iterator[list[logging.LogRecord]]:
    """Warnings of the orders service's logger, whatever the app's logging configuration."""
    handler = _Records()
    logger = logging.getLogger("ticketing.orders")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def _charge(order_id: str, **overrides: Any) -> ChargeCreated:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "order_id": uuid.UUID(order_id),
        "stripe_id": "ch_123",
        "amount": 2000,
        "currency": "usd",
    }
    return ChargeCreated(**{**values, **overrides})


async def _order(client: httpx.AsyncClient, bus: Harness) -> dict[str, Any]:
    ticket = await bus.add_ticket()
    signin(client)
    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def _stored(bus: Harness, order_id: str) -> Order:
    order = await bus.order(order_id)
    assert order is not None
    return order


async def test_a_charge_completes_the_order(client: httpx.AsyncClient, bus: Harness) -> None:
    order = await _order(client, bus)
    charge = _charge(order["id"], stripe_id="ch_paid")

    await bus.publish(charge)
    await bus.wait_handled("charge.created", 1)

    stored = await _stored(bus, order["id"])
    assert (stored.status, stored.version) == ("complete", 1)
    shown = (await client.get(f"/api/orders/{order['id']}")).json()
    assert (shown["status"], shown["version"]) == ("complete", 1)
    [recorded] = await bus.charges()
    assert (recorded.id, recorded.order_id, recorded.stripe_id, recorded.amount, recorded.currency) == (
        charge.id,
        stored.id,
        "ch_paid",
        2000,
        "usd",
    )
    assert recorded.refund_reason is None
    # Completing an order announces nothing: no catalogue event is about it, and the ticket stays held.
    assert await bus.outbox("order.cancelled") == []


async def test_a_completed_order_keeps_its_ticket(client: httpx.AsyncClient, bus: Harness) -> None:
    order = await _order(client, bus)
    await bus.publish(_charge(order["id"]))
    await bus.wait_handled("charge.created", 1)
    signin(client)

    response = await client.post("/api/orders", json={"ticketId": order["ticket"]["id"]})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Ticket is already reserved"}]}


async def test_a_repeated_charge_is_applied_once(client: httpx.AsyncClient, bus: Harness) -> None:
    order = await _order(client, bus)
    charge = _charge(order["id"])
    event_id = await bus.publish(charge)
    await bus.publish(charge, event_id=event_id, msg_id=str(uuid.uuid4()))  # redelivered
    await bus.publish(charge)  # the same charge republished under a new event id

    await bus.wait_handled("charge.created", 2)
    await bus.wait_handled("charge.created", 1, "duplicate")

    stored = await _stored(bus, order["id"])
    assert (stored.status, stored.version) == ("complete", 1)
    [recorded] = await bus.charges()
    assert recorded.refund_reason is None


async def test_a_charge_for_a_cancelled_order_is_recorded_as_needing_a_refund(
    client: httpx.AsyncClient, bus: Harness, warnings_logged: list[logging.LogRecord]
) -> None:
    order = await _order(client, bus)
    assert (await client.delete(f"/api/orders/{order['id']}")).status_code == 204
    charge = _charge(order["id"], stripe_id="ch_late")

    await bus.publish(charge)
    await bus.wait_handled("charge.created", 1)

    stored = await _stored(bus, order["id"])
    assert (stored.status, stored.version) == ("cancelled", 1)
    [recorded] = await bus.charges()
    assert (recorded.id, recorded.stripe_id, recorded.refund_reason) == (charge.id, "ch_late", "order cancelled")
    [warning] = [r for r in warnings_logged if r.getMessage() == "charge for cancelled order needs refund"]
    assert warning.levelno == logging.WARNING
    assert warning.__dict__["order_id"] == order["id"]
    assert warning.__dict__["charge_id"] == str(charge.id)
    assert warning.__dict__["stripe_id"] == "ch_late"


async def test_a_charge_for_an_expired_order_needs_a_refund(client: httpx.AsyncClient, bus: Harness) -> None:
    order = await _order(client, bus)
    await bus.publish(OrderExpired(order_id=uuid.UUID(order["id"])))
    await bus.wait_handled("order.expired", 1)

    await bus.publish(_charge(order["id"]))
    await bus.wait_handled("charge.created", 1)

    stored = await _stored(bus, order["id"])
    assert (stored.status, stored.version) == ("cancelled", 1)
    [recorded] = await bus.charges()
    assert recorded.refund_reason == "order cancelled"


async def test_a_second_charge_for_a_paid_order_needs_a_refund(
    client: httpx.AsyncClient, bus: Harness, warnings_logged: list[logging.LogRecord]
) -> None:
    order = await _order(client, bus)
    first, second = _charge(order["id"], stripe_id="ch_first"), _charge(order["id"], stripe_id="ch_second")
    await bus.publish(first)
    await bus.wait_handled("charge.created", 1)

    await bus.publish(second)
    await bus.wait_handled("charge.created", 2)

    stored = await _stored(bus, order["id"])
    assert (stored.status, stored.version) == ("complete", 1)
    reasons = {charge.stripe_id: charge.refund_reason for charge in await bus.charges()}
    assert reasons == {"ch_first": None, "ch_second": "order already paid"}
    assert [r.getMessage() for r in warnings_logged] == ["charge for already paid order needs refund"]


async def test_a_charge_for_an_unknown_order_is_parked_not_dropped(bus: Harness) -> None:
    charge = _charge(str(uuid.uuid4()))
    event_id = await bus.publish(charge)

    async def parked() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await bus.pool.fetchrow("SELECT event_id, subject, error FROM parked_messages")
        return row

    row = await wait_until(parked, timeout=20)
    assert row["event_id"] == str(event_id)
    assert row["subject"] == "charge.created"
    assert "UnknownOrderError" in row["error"]
    assert await bus.charges() == []


async def test_a_charge_racing_an_expiry_on_two_replicas_ends_in_one_consistent_outcome(
    client: httpx.AsyncClient, bus: Harness, settings: Settings
) -> None:
    orders = [await _order(client, bus) for _ in range(10)]
    async with running(create_app(settings)):  # a second replica: each event goes to either
        for order in orders:
            await asyncio.gather(
                bus.publish(_charge(order["id"])), bus.publish(OrderExpired(order_id=uuid.UUID(order["id"])))
            )

        async def all_settled() -> bool:
            charges = await bus.charges()
            finals = [await _stored(bus, order["id"]) for order in orders]
            return len(charges) == len(orders) and all(o.status in ("complete", "cancelled") for o in finals)

        await wait_until(all_settled, timeout=30)

    refunds = {str(charge.order_id): charge.refund_reason for charge in await bus.charges()}
    cancellations = [event["id"] for event in await bus.outbox("order.cancelled")]
    for order in orders:
        stored = await _stored(bus, order["id"])
        assert stored.version == 1
        if stored.status == "complete":  # the charge won: it paid, the expiry did nothing
            assert refunds[order["id"]] is None
            assert order["id"] not in cancellations
        else:  # the expiry won: one cancellation, and the charge waits for its refund
            assert refunds[order["id"]] == "order cancelled"
            assert cancellations.count(order["id"]) == 1
