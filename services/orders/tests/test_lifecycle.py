"""One ticket's story as the other services see it on NATS: every order event once, with its version."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import httpx
from nats.js import JetStreamContext

from ticketing_common.events import ChargeCreated, OrderExpired
from ticketing_common.testing import signin, stream_events, wait_for_events

if TYPE_CHECKING:
    from conftest import Harness


async def test_expired_cancelled_and_paid_orders_of_one_ticket_on_nats(
    client: httpx.AsyncClient, bus: Harness, js: JetStreamContext
) -> None:
    ticket = await bus.add_ticket()
    order_ticket = {"id": str(ticket.id), "price": 20}

    # A orders, never pays: the order expires.
    signin(client)
    expired = (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).json()
    await bus.publish(OrderExpired(order_id=uuid.UUID(expired["id"])))
    await wait_for_events(js, "order.cancelled", 1)
    # B orders, changes their mind.
    signin(client)
    cancelled = (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).json()
    assert (await client.delete(f"/api/orders/{cancelled['id']}")).status_code == 204
    # C orders and pays; the expiry that fires afterwards changes nothing.
    signin(client)
    paid = (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).json()
    await bus.publish(
        ChargeCreated(id=uuid.uuid4(), order_id=uuid.UUID(paid["id"]), stripe_id="ch_c", amount=2000, currency="usd")
    )
    await bus.wait_handled("charge.created", 1)
    await bus.publish(OrderExpired(order_id=uuid.UUID(paid["id"])))
    await bus.wait_handled("order.expired", 2)

    await wait_for_events(js, "order.created", 3)
    await wait_for_events(js, "order.cancelled", 2)
    await asyncio.sleep(0.3)  # time for a stray extra event to show up
    assert [e.data for e in await stream_events(js, "order.created")] == [
        {
            "id": order["id"],
            "status": "created",
            "userId": order["userId"],
            "expiresAt": order["expiresAt"],
            "version": 0,
            "ticket": order_ticket,
        }
        for order in (expired, cancelled, paid)
    ]
    assert [e.data for e in await stream_events(js, "order.cancelled")] == [
        {"id": expired["id"], "version": 1, "ticket": {"id": str(ticket.id)}},
        {"id": cancelled["id"], "version": 1, "ticket": {"id": str(ticket.id)}},
    ]
    shown = (await client.get(f"/api/orders/{paid['id']}")).json()
    assert (shown["status"], shown["version"]) == ("complete", 1)
