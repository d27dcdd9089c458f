"""GET /api/tickets: tickets for sale, newest first, page by page with an opaque keyset cursor."""

from __future__ import annotations

import base64
import uuid
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from ticketing_common.testing import signin, wait_until
from ticketing_tickets.queries import INSERT_TICKET


async def _all_pages(client: httpx.AsyncClient, limit: int) -> list[list[dict]]:
    pages: list[list[dict]] = []
    cursor = None
    while True:
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/tickets", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["tickets"])
        cursor = body["next"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


async def test_is_empty_when_nothing_is_for_sale(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/tickets")
    assert response.status_code == 200
    assert response.json() == {"tickets": [], "next": None}


async def test_lists_tickets_newest_first_to_anyone(client: httpx.AsyncClient, make_ticket) -> None:
    user = signin(client)
    first = await make_ticket("First", 1)
    second = await make_ticket("Second", 2.5)
    client.cookies.clear()
    response = await client.get("/api/tickets")
    assert response.status_code == 200
    assert response.json() == {
        "tickets": [
            {
                "id": second["id"],
                "title": "Second",
                "price": 2.5,
                "userId": str(user.id),
                "orderId": None,
                "version": 0,
                "eventId": None,
            },
            {
                "id": first["id"],
                "title": "First",
                "price": 1,
                "userId": str(user.id),
                "orderId": None,
                "version": 0,
                "eventId": None,
            },
        ],
        "next": None,
    }


async def test_pages_through_every_available_ticket_once_skipping_reserved_ones(
    client: httpx.AsyncClient, make_ticket, orders, stored
) -> None:
    signin(client)
    created = [await make_ticket(f"T{i}", i + 1) for i in range(11)]
    reserved = created[4]
    order_id, _ = await orders.created(reserved["id"])

    async def is_reserved() -> bool:
        ticket = await stored(reserved["id"])
        return ticket is not None and ticket.order_id == order_id

    await wait_until(is_reserved)

    pages = await _all_pages(client, limit=3)
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    listed = [t["id"] for page in pages for t in page]
    expected = [t["id"] for t in reversed(created) if t is not reserved]
    assert listed == expected


async def test_the_last_full_page_has_no_next_cursor(client: httpx.AsyncClient, make_ticket) -> None:
    signin(client)
    for i in range(4):
        await make_ticket(f"T{i}", 1)
    pages = await _all_pages(client, limit=2)
    assert [len(p) for p in pages] == [2, 2]


async def test_tickets_created_in_the_same_instant_are_ordered_by_id_and_none_is_lost(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # One transaction gives every row the same created_at: only the id can break the tie.
    ids = [uuid.uuid4() for _ in range(7)]
    async with app.state.db.pool.acquire() as conn, conn.transaction():
        await conn.executemany(INSERT_TICKET, [(i, "Same time", Decimal("5.00"), uuid.uuid4(), None) for i in ids])
    pages = await _all_pages(client, limit=2)
    listed = [t["id"] for page in pages for t in page]
    assert listed == [str(i) for i in sorted(ids, reverse=True)]


async def test_default_page_size_is_50(client: httpx.AsyncClient, app: FastAPI) -> None:
    await app.state.db.pool.executemany(
        INSERT_TICKET, [(uuid.uuid4(), "t", Decimal(1), uuid.uuid4(), None) for _ in range(51)]
    )
    body = (await client.get("/api/tickets")).json()
    assert len(body["tickets"]) == 50
    assert body["next"] is not None
    rest = (await client.get("/api/tickets", params={"cursor": body["next"]})).json()
    assert len(rest["tickets"]) == 1
    assert rest["next"] is None


async def test_a_limit_of_100_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/tickets", params={"limit": "100"})
    assert response.status_code == 200


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "", "1.5", "99999999999999999999999", "\u0661"])
async def test_returns_400_for_an_invalid_limit(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/api/tickets", params={"limit": limit})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Limit must be a whole number from 1 to 100", "field": "limit"}]}


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",
        "!!!!",
        "ééé",
        _b64("2024-01-01T00:00:00+00:00"),
        _b64(f"not-a-time|{uuid.uuid4()}"),
        _b64("2024-01-01T00:00:00+00:00|not-a-uuid"),
        _b64(f"2024-01-01T00:00:00|{uuid.uuid4()}"),  # no time zone
        _b64(f"2024-01-01T00:00:00+00:00|{uuid.uuid4()}|extra"),
    ],
)
async def test_returns_400_for_an_invalid_cursor(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/api/tickets", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Invalid cursor", "field": "cursor"}]}


async def test_a_cursor_stays_valid_when_its_ticket_is_reserved_before_the_next_page(
    client: httpx.AsyncClient, make_ticket, orders, stored
) -> None:
    signin(client)
    created = [await make_ticket(f"T{i}", 1) for i in range(5)]
    first = (await client.get("/api/tickets", params={"limit": "2"})).json()
    assert [t["id"] for t in first["tickets"]] == [created[4]["id"], created[3]["id"]]
    order_id, _ = await orders.created(created[3]["id"])

    async def reserved() -> bool:
        ticket = await stored(created[3]["id"])
        return ticket is not None and ticket.order_id == order_id

    await wait_until(reserved)
    newer = await make_ticket("Newer", 1)  # newer than the cursor: belongs to a fresh first page, not to page 2
    second = (await client.get("/api/tickets", params={"limit": "2", "cursor": first["next"]})).json()
    assert [t["id"] for t in second["tickets"]] == [created[2]["id"], created[1]["id"]]
    assert newer["id"] not in [t["id"] for t in second["tickets"]]
