"""order.expired: an unpaid order is cancelled (order.cancelled, version + 1); a paid or cancelled one is not."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from nats.js import JetStreamContext

from ticketing_common.events import ChargeCreated, OrderExpired
from ticketing_common.testing import signin, stream_events, wait_for_events, wait_until

if TYPE_CHECKING:
    from conftest import Harness

    from ticketing_orders.queries import Order


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


async def test_expiry_cancels_a_created_order_and_publishes_order_cancelled(
    client: httpx.AsyncClient, bus: Harness, js: JetStreamContext
) -> None:
    order = await _order(client, bus)

    await bus.publish(OrderExpired(order_id=uuid.UUID(order["id"])))

    [event] = await wait_for_events(js, "order.cancelled", 1)
    assert event.data == {"id": order["id"], "version": 1, "ticket": {"id": order["ticket"]["id"]}}
    stored = await _stored(bus, order["id"])
    assert (stored.status, stored.version) == ("cancelled", 1)
    shown = (await client.get(f"/api/orders/{order['id']}")).json()
    assert (shown["status"], shown["version"]) == ("cancelled", 1)


async def test_expiry_of_a_complete_order_changes_nothing(
    client: httpx.AsyncClient, bus: Harness, js: JetStreamContext
) -> None:
    order = await _order(client, bus)
    await bus.publish(
        ChargeCreated(id=uuid.uuid4(), order_id=uuid.UUID(order["id"]), stripe_id="ch_1", amount=2000, currency="usd")
    )
    await bus.wait_handled("charge.created", 1)

    await bus.publish(OrderExpired(order_id=uuid.UUID(order["id"])))
    await bus.wait_handled("order.expired", 1)

    stored = await _stored(bus, order["id"])
    assert (stored.status, stored.version) == ("complete", 1)
    assert await bus.outbox("order.cancelled") == []
    assert await stream_events(js, "order.cancelled") == []


async def test_expiry_of_an_already_cancelled_order_publishes_no_second_event(
    client: httpx.AsyncClient, bus: Harness, js: JetStreamContext
) -> None:
    order = await _order(client, bus)
    assert (await client.delete(f"/api/orders/{order['id']}")).status_code == 204

    await bus.publish(OrderExpired(order_id=uuid.UUID(order["id"])))
    await bus.wait_handled("order.expired", 1)

    stored = await _stored(bus, order["id"])
    assert (stored.status, stored.version) == ("cancelled", 1)
    assert len(await bus.outbox("order.cancelled")) == 1
    await wait_for_events(js, "order.cancelled", 1)
    await asyncio.sleep(0.3)
    assert len(await stream_events(js, "order.cancelled")) == 1


async def test_a_repeated_expiry_cancels_once(client: httpx.AsyncClient, bus: Harness, js: JetStreamContext) -> None:
    order = await _order(client, bus)
    expired = OrderExpired(order_id=uuid.UUID(order["id"]))
    event_id = await bus.publish(expired)
    await bus.publish(expired, event_id=event_id, msg_id=str(uuid.uuid4()))  # redelivered
    await bus.publish(expired)  # expired again under a new event id

    await bus.wait_handled("order.expired", 2)
    await bus.wait_handled("order.expired", 1, "duplicate")

    stored = await _stored(bus, order["id"])
    assert (stored.status, stored.version) == ("cancelled", 1)
    [event] = await wait_for_events(js, "order.cancelled", 1)
    assert event.data["version"] == 1
    assert len(await bus.outbox("order.cancelled")) == 1


async def test_expiry_of_an_unknown_order_is_acknowledged_without_effect(bus: Harness) -> None:
    await bus.publish(OrderExpired(order_id=uuid.uuid4()))

    await bus.wait_handled("order.expired", 1)
    assert await bus.count_orders() == 0
    assert await bus.outbox("order.cancelled") == []


async def test_an_expired_ticket_can_be_ordered_again(client: httpx.AsyncClient, bus: Harness) -> None:
    order = await _order(client, bus)
    await bus.publish(OrderExpired(order_id=uuid.UUID(order["id"])))

    async def cancelled() -> bool:
        return (await _stored(bus, order["id"])).status == "cancelled"

    await wait_until(cancelled)
    signin(client)
    response = await client.post("/api/orders", json={"ticketId": order["ticket"]["id"]})
    assert response.status_code == 201
