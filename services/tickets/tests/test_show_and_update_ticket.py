"""GET and PUT /api/tickets/:id: anyone reads a ticket; only its owner edits it, and only while no order holds it."""

from __future__ import annotations

import uuid

import httpx
import pytest

from ticketing_common.testing import signin, wait_until

MALFORMED_IDS = ["abc", "123", "not-a-uuid", "00000000-0000-0000-0000-00000000000", "%20", "' OR 1=1 --"]


async def test_shows_a_ticket_to_anyone(client: httpx.AsyncClient, make_ticket) -> None:
    user = signin(client)
    created = await make_ticket("Concert", 19.99)
    client.cookies.clear()
    response = await client.get(f"/api/tickets/{created['id']}")
    assert response.status_code == 200
    assert response.json() == {
        "id": created["id"],
        "title": "Concert",
        "price": 19.99,
        "userId": str(user.id),
        "orderId": None,
        "version": 0,
        "eventId": None,
    }


async def test_shows_the_order_holding_a_ticket(client: httpx.AsyncClient, make_ticket, orders) -> None:
    signin(client)
    created = await make_ticket()
    order_id, _ = await orders.created(created["id"])

    async def held() -> dict | None:
        body = (await client.get(f"/api/tickets/{created['id']}")).json()
        return body if body["orderId"] else None

    body = await wait_until(held)
    assert body["orderId"] == str(order_id)
    assert body["version"] == 1


async def test_returns_404_for_an_unknown_ticket(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/tickets/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}


@pytest.mark.parametrize("ticket_id", MALFORMED_IDS)
async def test_returns_404_for_a_malformed_id(client: httpx.AsyncClient, ticket_id: str) -> None:
    response = await client.get(f"/api/tickets/{ticket_id}")
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}


async def test_update_returns_401_when_not_signed_in(client: httpx.AsyncClient, make_ticket, stored) -> None:
    signin(client)
    created = await make_ticket("Concert", 10)
    client.cookies.clear()
    response = await client.put(f"/api/tickets/{created['id']}", json={"title": "Changed", "price": 11})
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not authorized"}]}
    assert (await stored(created["id"])).title == "Concert"


async def test_update_returns_404_for_an_unknown_ticket(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.put(f"/api/tickets/{uuid.uuid4()}", json={"title": "Changed", "price": 11})
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}


@pytest.mark.parametrize("ticket_id", MALFORMED_IDS)
async def test_update_returns_404_for_a_malformed_id(client: httpx.AsyncClient, ticket_id: str) -> None:
    signin(client)
    response = await client.put(f"/api/tickets/{ticket_id}", json={"title": "Changed", "price": 11})
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}


async def test_update_returns_403_when_not_the_owner(client: httpx.AsyncClient, make_ticket, stored, published) -> None:
    signin(client)
    created = await make_ticket("Concert", 10)
    signin(client)  # somebody else
    response = await client.put(f"/api/tickets/{created['id']}", json={"title": "Mine now", "price": 1})
    assert response.status_code == 403
    assert response.json() == {"errors": [{"message": "Forbidden"}]}
    ticket = await stored(created["id"])
    assert (ticket.title, ticket.version) == ("Concert", 0)
    assert await published("ticket.updated") == []


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        pytest.param(
            {"title": "", "price": 10}, [{"message": "Title is required", "field": "title"}], id="empty-title"
        ),
        pytest.param({"price": 10}, [{"message": "Title is required", "field": "title"}], id="missing-title"),
        pytest.param(
            {"title": "Gig", "price": -10},
            [{"message": "Price must be greater than 0", "field": "price"}],
            id="negative",
        ),
        pytest.param({"title": "Gig"}, [{"message": "Price must be greater than 0", "field": "price"}], id="no-price"),
        pytest.param(
            {"title": "Gig", "price": 10, "version": -1},
            [{"message": "Version must be a whole number of 0 or more", "field": "version"}],
            id="negative-version",
        ),
        pytest.param(
            {"title": "Gig", "price": 10, "version": "0"},
            [{"message": "Version must be a whole number of 0 or more", "field": "version"}],
            id="string-version",
        ),
        pytest.param(
            {"title": "Gig", "price": 10, "version": True},
            [{"message": "Version must be a whole number of 0 or more", "field": "version"}],
            id="boolean-version",
        ),
    ],
)
async def test_update_returns_400_for_invalid_fields(
    client: httpx.AsyncClient, make_ticket, stored, body: dict, errors: list
) -> None:
    signin(client)
    created = await make_ticket("Concert", 10)
    response = await client.put(f"/api/tickets/{created['id']}", json=body)
    assert response.status_code == 400
    assert response.json() == {"errors": errors}
    assert (await stored(created["id"])).version == 0


async def test_update_returns_400_when_ticket_is_reserved(
    client: httpx.AsyncClient, make_ticket, orders, stored, published
) -> None:
    signin(client)
    created = await make_ticket("Concert", 10)
    order_id, _ = await orders.created(created["id"])
    await wait_until(lambda: _held_by(stored, created["id"], order_id))

    response = await client.put(f"/api/tickets/{created['id']}", json={"title": "Changed", "price": 11})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Cannot edit a reserved ticket"}]}
    ticket = await stored(created["id"])
    assert (ticket.title, ticket.price, ticket.version) == ("Concert", 10, 1)
    assert [e.data["orderId"] for e in await published("ticket.updated")] == [str(order_id)]


async def test_update_changes_title_and_price_and_bumps_the_version(
    client: httpx.AsyncClient, make_ticket, published
) -> None:
    user = signin(client)
    created = await make_ticket("Concert", 10)
    response = await client.put(f"/api/tickets/{created['id']}", json={"title": " Opera ", "price": 99.95})
    assert response.status_code == 200
    assert response.json() == {
        "id": created["id"],
        "title": "Opera",
        "price": 99.95,
        "userId": str(user.id),
        "orderId": None,
        "version": 1,
        "eventId": None,
    }
    assert (await client.get(f"/api/tickets/{created['id']}")).json() == response.json()
    [event] = await published("ticket.updated")
    assert event.data == {
        "id": created["id"],
        "title": "Opera",
        "price": 99.95,
        "userId": str(user.id),
        "orderId": None,
        "version": 1,
        "eventId": None,
    }
    assert event.headers["ce-type"] == "ticket.updated"


async def test_update_with_the_current_version_applies(client: httpx.AsyncClient, make_ticket) -> None:
    signin(client)
    created = await make_ticket("Concert", 10)
    first = await client.put(f"/api/tickets/{created['id']}", json={"title": "A", "price": 1, "version": 0})
    second = await client.put(f"/api/tickets/{created['id']}", json={"title": "B", "price": 2, "version": 1})
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["version"] == 2


async def test_update_returns_409_for_a_stale_version_and_loses_nothing(
    client: httpx.AsyncClient, make_ticket, stored, published
) -> None:
    signin(client)
    created = await make_ticket("Concert", 10)
    # Two editors loaded version 0; the first saves, the second's save is based on what it never saw.
    first = await client.put(f"/api/tickets/{created['id']}", json={"title": "First", "price": 11, "version": 0})
    stale = await client.put(f"/api/tickets/{created['id']}", json={"title": "Stale", "price": 12, "version": 0})
    assert first.status_code == 200
    assert stale.status_code == 409
    assert stale.json() == {"errors": [{"message": "Ticket was modified, reload and try again"}]}
    ticket = await stored(created["id"])
    assert (ticket.title, ticket.price, ticket.version) == ("First", 11, 1)
    assert [(e.data["title"], e.data["version"]) for e in await published("ticket.updated")] == [("First", 1)]


async def test_a_version_from_the_future_is_409_too(client: httpx.AsyncClient, make_ticket) -> None:
    signin(client)
    created = await make_ticket("Concert", 10)
    response = await client.put(f"/api/tickets/{created['id']}", json={"title": "A", "price": 1, "version": 5})
    assert response.status_code == 409


async def _held_by(stored, ticket_id: str, order_id: uuid.UUID) -> bool:
    ticket = await stored(ticket_id)
    return ticket is not None and ticket.order_id == order_id
