"""GET /api/orders and GET /api/orders/:id: the caller's orders only, no existence leak."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import pytest

from ticketing_common.testing import signin

if TYPE_CHECKING:
    from conftest import Harness

NOT_FOUND = {"errors": [{"message": "Not Found"}]}


async def test_lists_the_callers_orders_with_their_tickets_newest_first(
    client: httpx.AsyncClient, bus: Harness
) -> None:
    first_ticket = await bus.add_ticket(title="First", price=Decimal("10"))
    second_ticket = await bus.add_ticket(title="Second", price=Decimal("20.25"))
    someone_elses_ticket = await bus.add_ticket(title="Other")
    buyer = signin(client)
    first = (await client.post("/api/orders", json={"ticketId": str(first_ticket.id)})).json()
    second = (await client.post("/api/orders", json={"ticketId": str(second_ticket.id)})).json()
    assert (await client.delete(f"/api/orders/{first['id']}")).status_code == 204
    signin(client)
    assert (await client.post("/api/orders", json={"ticketId": str(someone_elses_ticket.id)})).status_code == 201
    signin(client, user_id=buyer.id)

    response = await client.get("/api/orders")

    assert response.status_code == 200
    assert response.json() == [
        second,
        {**first, "status": "cancelled", "version": 1},
    ]
    assert response.json()[0]["ticket"] == {
        "id": str(second_ticket.id),
        "title": "Second",
        "price": 20.25,
        "version": 0,
    }


async def test_lists_nothing_for_a_user_without_orders(client: httpx.AsyncClient, bus: Harness) -> None:
    ticket = await bus.add_ticket()
    signin(client)
    assert (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).status_code == 201
    signin(client)

    response = await client.get("/api/orders")

    assert response.status_code == 200
    assert response.json() == []


async def test_shows_the_callers_order(client: httpx.AsyncClient, bus: Harness) -> None:
    ticket = await bus.add_ticket()
    signin(client)
    created = (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).json()

    response = await client.get(f"/api/orders/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


async def test_returns_404_for_another_users_order(client: httpx.AsyncClient, bus: Harness) -> None:
    ticket = await bus.add_ticket()
    signin(client)
    created = (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).json()
    signin(client)

    response = await client.get(f"/api/orders/{created['id']}")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.parametrize(
    "order_id", [str(uuid.uuid4()), "not-an-id", "123", "%20"], ids=["unknown", "word", "digits", "space"]
)
async def test_returns_404_for_unknown_and_malformed_ids(client: httpx.AsyncClient, order_id: str) -> None:
    signin(client)

    response = await client.get(f"/api/orders/{order_id}")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
