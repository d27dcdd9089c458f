"""DELETE /api/orders/:id: cancel the caller's order, publish order.cancelled once."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from nats.js import JetStreamContext

from ticketing_common.events import OrderStatus
from ticketing_common.testing import signin, stream_events, wait_for_events

if TYPE_CHECKING:
    from conftest import Harness

NOT_FOUND = {"errors": [{"message": "Not Found"}]}


async def _order(client: httpx.AsyncClient, bus: Harness) -> dict[str, Any]:
    ticket = await bus.add_ticket()
    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def test_returns_204_cancels_bumps_the_version_and_publishes_order_cancelled(
    client: httpx.AsyncClient, bus: Harness, js: JetStreamContext
) -> None:
    signin(client)
    order = await _order(client, bus)

    response = await client.delete(f"/api/orders/{order['id']}")

    assert response.status_code == 204
    assert response.content == b""
    shown = (await client.get(f"/api/orders/{order['id']}")).json()
    assert (shown["status"], shown["version"]) == ("cancelled", 1)
    [event] = await wait_for_events(js, "order.cancelled", 1)
    assert event.data == {"id": order["id"], "version": 1, "ticket": {"id": order["ticket"]["id"]}}
    assert event.headers["ce-source"] == "orders"


async def test_cancelling_a_cancelled_order_is_a_no_op_204_without_a_second_event(
    client: httpx.AsyncClient, bus: Harness, js: JetStreamContext
) -> None:
    signin(client)
    order = await _order(client, bus)
    assert (await client.delete(f"/api/orders/{order['id']}")).status_code == 204

    again = await client.delete(f"/api/orders/{order['id']}")

    assert again.status_code == 204
    assert again.content == b""
    shown = (await client.get(f"/api/orders/{order['id']}")).json()
    assert (shown["status"], shown["version"]) == ("cancelled", 1)
    assert len(await bus.outbox("order.cancelled")) == 1
    await wait_for_events(js, "order.cancelled", 1)
    await asyncio.sleep(0.3)
    assert len(await stream_events(js, "order.cancelled")) == 1


async def test_concurrent_cancellations_cancel_once(
    client: httpx.AsyncClient, bus: Harness, js: JetStreamContext
) -> None:
    signin(client)
    order = await _order(client, bus)

    responses = await asyncio.gather(*(client.delete(f"/api/orders/{order['id']}") for _ in range(10)))

    assert [r.status_code for r in responses] == [204] * 10
    stored = await bus.order(order["id"])
    assert stored is not None
    assert (stored.status, stored.version) == ("cancelled", 1)
    assert await bus.outbox("order.cancelled") == [
        {"id": order["id"], "version": 1, "ticket": {"id": order["ticket"]["id"]}}
    ]


async def test_returns_400_when_cancelling_a_completed_order(client: httpx.AsyncClient, bus: Harness) -> None:
    signin(client)
    order = await _order(client, bus)
    await bus.set_status(order["id"], OrderStatus.COMPLETE)

    response = await client.delete(f"/api/orders/{order['id']}")

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Cannot cancel a completed order"}]}
    stored = await bus.order(order["id"])
    assert stored is not None
    assert (stored.status, stored.version) == ("complete", 0)
    assert await bus.outbox("order.cancelled") == []


async def test_returns_404_when_cancelling_another_users_order(client: httpx.AsyncClient, bus: Harness) -> None:
    signin(client)
    order = await _order(client, bus)
    signin(client)

    response = await client.delete(f"/api/orders/{order['id']}")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    stored = await bus.order(order["id"])
    assert stored is not None
    assert (stored.status, stored.version) == ("created", 0)
    assert await bus.outbox("order.cancelled") == []


@pytest.mark.parametrize("order_id", [str(uuid.uuid4()), "not-an-id"], ids=["unknown", "malformed"])
async def test_returns_404_when_cancelling_an_unknown_order(client: httpx.AsyncClient, order_id: str) -> None:
    signin(client)

    response = await client.delete(f"/api/orders/{order_id}")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
