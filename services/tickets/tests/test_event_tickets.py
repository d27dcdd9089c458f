"""Tickets of events: an event's owner puts up to 5,000 tickets on sale at once (all or none, each with its own
ticket.created), or one at a time with ``eventId``; nobody else may. Every ticket shows its ``eventId`` (null
without one), its events carry it, and the listing shows one event's available tickets."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ticketing_common.db import UnitOfWork
from ticketing_common.testing import recorded_statements, signin, wait_for_events, wait_until

COUNT_MESSAGE = "Count must be a whole number from 1 to 5000"


async def _tickets_of(app: FastAPI, event_id: str) -> int:
    count: int = await app.state.db.pool.fetchval(
        "SELECT count(*) FROM tickets WHERE event_id = $1", uuid.UUID(event_id)
    )
    return count


# -- POST /api/events/:id/tickets ----------------------------------------------------------------------------------


async def test_bulk_returns_401_when_not_signed_in(client: httpx.AsyncClient, make_event, app: FastAPI) -> None:
    signin(client)
    event = await make_event()
    client.cookies.clear()
    response = await client.post(f"/api/events/{event['id']}/tickets", json={"count": 2, "price": 10})
    assert response.status_code == 401
    assert await _tickets_of(app, event["id"]) == 0


async def test_bulk_returns_404_for_an_unknown_event(client: httpx.AsyncClient, app: FastAPI) -> None:
    signin(client)
    response = await client.post(f"/api/events/{uuid.uuid4()}/tickets", json={"count": 2, "price": 10})
    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Not Found"}]}
    response = await client.post("/api/events/not-an-id/tickets", json={"count": 2, "price": 10})
    assert response.status_code == 404
    assert await app.state.db.pool.fetchval("SELECT count(*) FROM tickets") == 0


async def test_bulk_returns_403_for_someone_elses_event(
    client: httpx.AsyncClient, make_event, app: FastAPI, published
) -> None:
    signin(client)
    event = await make_event()
    signin(client)  # somebody else
    response = await client.post(f"/api/events/{event['id']}/tickets", json={"count": 2, "price": 10})
    assert response.status_code == 403
    assert response.json() == {"errors": [{"message": "Forbidden"}]}
    assert await _tickets_of(app, event["id"]) == 0
    assert await published("ticket.created") == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param({"price": 10}, {"message": COUNT_MESSAGE, "field": "count"}, id="count-missing"),
        pytest.param({"count": 0, "price": 10}, {"message": COUNT_MESSAGE, "field": "count"}, id="count-0"),
        pytest.param({"count": 5001, "price": 10}, {"message": COUNT_MESSAGE, "field": "count"}, id="count-5001"),
        pytest.param({"count": -3, "price": 10}, {"message": COUNT_MESSAGE, "field": "count"}, id="count-negative"),
        pytest.param({"count": 2.5, "price": 10}, {"message": COUNT_MESSAGE, "field": "count"}, id="count-fraction"),
        pytest.param({"count": "2", "price": 10}, {"message": COUNT_MESSAGE, "field": "count"}, id="count-string"),
        pytest.param({"count": True, "price": 10}, {"message": COUNT_MESSAGE, "field": "count"}, id="count-boolean"),
        pytest.param({"count": 2}, {"message": "Price must be greater than 0", "field": "price"}, id="price-missing"),
        pytest.param(
            {"count": 2, "price": 0}, {"message": "Price must be greater than 0", "field": "price"}, id="price-0"
        ),
        pytest.param(
            {"count": 2, "price": 1000000.01},
            {"message": "Price must be at most 1000000", "field": "price"},
            id="price-above-maximum",
        ),
        pytest.param(
            {"count": 2, "price": 19.999},
            {"message": "Price must have at most two decimals", "field": "price"},
            id="price-three-decimals",
        ),
        pytest.param(
            {"count": 2, "price": 10, "title": " "},
            {"message": "Title is required", "field": "title"},
            id="title-blank",
        ),
        pytest.param(
            {"count": 2, "price": 10, "title": "x" * 201},
            {"message": "Title must be at most 200 characters", "field": "title"},
            id="title-too-long",
        ),
        pytest.param(
            {"count": 2, "price": 10, "title": "a\u202eb"},
            {"message": "Title must not contain control characters", "field": "title"},
            id="title-control-characters",
        ),
    ],
)
async def test_bulk_returns_400_for_each_invalid_field(
    client: httpx.AsyncClient, make_event, app: FastAPI, body: dict[str, Any], error: dict[str, str]
) -> None:
    signin(client)
    event = await make_event()
    response = await client.post(
        f"/api/events/{event['id']}/tickets", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"errors": [error]}
    assert await _tickets_of(app, event["id"]) == 0


async def test_bulk_creates_tickets_named_after_the_event_by_default(
    client: httpx.AsyncClient, make_event, published
) -> None:
    user = signin(client)
    event = await make_event("Jazz Night")
    response = await client.post(f"/api/events/{event['id']}/tickets", json={"count": 3, "price": 19.99})
    assert response.status_code == 201
    assert response.json() == {"created": 3}
    listed = (await client.get("/api/tickets", params={"eventId": event["id"]})).json()["tickets"]
    assert len({t["id"] for t in listed}) == 3
    assert all(
        t == {**t, "title": "Jazz Night", "price": 19.99, "userId": str(user.id), "orderId": None, "version": 0}
        for t in listed
    )
    assert {t["eventId"] for t in listed} == {event["id"]}
    created = await published("ticket.created")
    assert sorted(e.data["id"] for e in created) == sorted(t["id"] for t in listed)


async def test_bulk_takes_a_title_of_its_own(client: httpx.AsyncClient, make_event) -> None:
    signin(client)
    event = await make_event("Jazz Night")
    response = await client.post(
        f"/api/events/{event['id']}/tickets", json={"count": 2, "price": 5, "title": "  Balcony  "}
    )
    assert response.status_code == 201
    listed = (await client.get("/api/tickets", params={"eventId": event["id"]})).json()["tickets"]
    assert [t["title"] for t in listed] == ["Balcony", "Balcony"]


async def test_5000_tickets_at_once_are_5000_tickets_and_5000_ticket_created_events_with_the_event_id(
    client: httpx.AsyncClient, make_event, app: FastAPI, js
) -> None:
    user = signin(client)
    event = await make_event("Festival")
    async with recorded_statements(app) as sent:
        started = time.perf_counter()
        response = await client.post(f"/api/events/{event['id']}/tickets", json={"count": 5000, "price": 45.5})
        elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.text
    assert response.json() == {"created": 5000}
    # Set-based: one INSERT of the tickets and one of their outbox rows, whatever the count.
    [tickets_insert, outbox_insert] = [s for s in sent if s.lstrip().upper().startswith("INSERT")]
    assert "generate_series" in tickets_insert
    assert "INSERT INTO outbox" in outbox_insert
    print(f"5000 tickets and their events committed in {elapsed:.3f} s")  # shown with -s

    rows = await app.state.db.pool.fetch(
        "SELECT id, title, price, user_id, order_id, version FROM tickets WHERE event_id = $1", uuid.UUID(event["id"])
    )
    assert len(rows) == len({row["id"] for row in rows}) == 5000
    assert {(r["title"], str(r["price"]), r["user_id"], r["order_id"], r["version"]) for r in rows} == {
        ("Festival", "45.50", user.id, None, 0)
    }
    events = await wait_for_events(js, "ticket.created", 5000, timeout=60)
    assert len(events) == 5000
    assert {e.data["id"] for e in events} == {str(row["id"]) for row in rows}
    assert {(e.data["eventId"], e.data["title"], e.data["price"], e.data["version"]) for e in events} == {
        (event["id"], "Festival", 45.5, 0)
    }
    assert len({e.headers["Nats-Msg-Id"] for e in events}) == 5000
    counts = (await client.get(f"/api/events/{event['id']}")).json()["tickets"]
    assert counts == {"available": 5000, "reserved": 0}


async def test_a_failure_before_the_commit_creates_no_ticket_and_publishes_nothing(
    client: httpx.AsyncClient, make_event, app: FastAPI, published, monkeypatch: pytest.MonkeyPatch
) -> None:
    signin(client)
    event = await make_event()
    real_write = UnitOfWork.write_outbox

    async def write_then_fail(uow: UnitOfWork) -> None:
        await real_write(uow)  # the tickets and their outbox rows are written...
        raise ConnectionResetError("the database went away before the commit")  # ...and never committed

    monkeypatch.setattr(UnitOfWork, "write_outbox", write_then_fail)
    response = await client.post(f"/api/events/{event['id']}/tickets", json={"count": 5000, "price": 10})
    assert response.status_code in (500, 503)
    monkeypatch.undo()
    assert await _tickets_of(app, event["id"]) == 0
    assert await app.state.db.pool.fetchval("SELECT count(*) FROM outbox WHERE subject = 'ticket.created'") == 0
    assert await published("ticket.created") == []
    assert (await client.get("/api/tickets", params={"eventId": event["id"]})).json() == {"tickets": [], "next": None}


# -- POST /api/tickets with eventId --------------------------------------------------------------------------------


async def test_a_ticket_for_ones_own_event_carries_its_event_id_everywhere(
    client: httpx.AsyncClient, make_event, published
) -> None:
    user = signin(client)
    event = await make_event()
    response = await client.post("/api/tickets", json={"title": "Front row", "price": 99, "eventId": event["id"]})
    assert response.status_code == 201
    ticket = response.json()
    assert ticket == {
        "id": ticket["id"],
        "title": "Front row",
        "price": 99,
        "userId": str(user.id),
        "orderId": None,
        "version": 0,
        "eventId": event["id"],
    }
    assert (await client.get(f"/api/tickets/{ticket['id']}")).json() == ticket
    [created] = await published("ticket.created")
    assert created.data == {k: v for k, v in ticket.items() if k != "orderId"}


async def test_returns_400_when_the_event_id_names_no_event(client: httpx.AsyncClient, app: FastAPI, published) -> None:
    signin(client)
    response = await client.post("/api/tickets", json={"title": "t", "price": 1, "eventId": str(uuid.uuid4())})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Event not found", "field": "eventId"}]}
    assert await app.state.db.pool.fetchval("SELECT count(*) FROM tickets") == 0
    assert await published("ticket.created") == []


@pytest.mark.parametrize("event_id", ["not-an-id", "", 42, True, ["x"]])
async def test_returns_400_when_the_event_id_is_not_an_id(client: httpx.AsyncClient, event_id: object) -> None:
    signin(client)
    response = await client.post("/api/tickets", json={"title": "t", "price": 1, "eventId": event_id})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Event id must be a valid id", "field": "eventId"}]}


async def test_returns_403_when_the_event_is_someone_elses(
    client: httpx.AsyncClient, make_event, app: FastAPI, published
) -> None:
    signin(client)
    event = await make_event()
    signin(client)  # somebody else
    response = await client.post("/api/tickets", json={"title": "Mine", "price": 1, "eventId": event["id"]})
    assert response.status_code == 403
    assert response.json() == {"errors": [{"message": "Forbidden"}]}
    assert await _tickets_of(app, event["id"]) == 0
    assert await published("ticket.created") == []


async def test_a_ticket_without_an_event_shows_event_id_null(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post("/api/tickets", json={"title": "Loose", "price": 1, "eventId": None})
    assert response.status_code == 201
    assert response.json()["eventId"] is None


async def test_an_edit_keeps_the_event_and_ignores_an_event_id_in_the_body(
    client: httpx.AsyncClient, make_event, published
) -> None:
    signin(client)
    event = await make_event()
    other = await make_event("Other")
    ticket = (await client.post("/api/tickets", json={"title": "A", "price": 1, "eventId": event["id"]})).json()
    edited = await client.put(f"/api/tickets/{ticket['id']}", json={"title": "B", "price": 2, "eventId": other["id"]})
    assert edited.status_code == 200
    assert edited.json()["eventId"] == event["id"]
    [updated] = await published("ticket.updated")
    assert updated.data["eventId"] == event["id"]


async def test_holds_and_releases_by_orders_publish_the_event_id(
    client: httpx.AsyncClient, make_event, orders, published
) -> None:
    signin(client)
    event = await make_event()
    ticket = (await client.post("/api/tickets", json={"title": "A", "price": 1, "eventId": event["id"]})).json()
    order_id, _ = await orders.created(ticket["id"])

    async def held() -> dict | None:
        body = (await client.get(f"/api/tickets/{ticket['id']}")).json()
        return body if body["orderId"] == str(order_id) else None

    assert (await wait_until(held))["eventId"] == event["id"]
    await orders.cancelled(ticket["id"], order_id)

    async def released() -> bool:
        return len(await published("ticket.updated")) == 2

    await wait_until(released)
    assert [e.data["eventId"] for e in await published("ticket.updated")] == [event["id"], event["id"]]


async def test_a_bulk_ticket_is_shown_from_the_read_model_with_its_event_id(
    client: httpx.AsyncClient, make_event, app: FastAPI
) -> None:
    signin(client)
    event = await make_event()
    await client.post(f"/api/events/{event['id']}/tickets", json={"count": 3, "price": 7})
    [ticket, *_] = (await client.get("/api/tickets", params={"eventId": event["id"]})).json()["tickets"]
    async with recorded_statements(app) as sent:
        shown = await client.get(f"/api/tickets/{ticket['id']}")
    assert shown.json() == ticket
    assert shown.json()["eventId"] == event["id"]
    assert sent == []  # the commit of the bulk creation put it in this replica's read model


# -- GET /api/tickets?eventId= -------------------------------------------------------------------------------------


async def test_lists_one_events_available_tickets_newest_first_page_by_page(
    client: httpx.AsyncClient, make_event, orders, stored
) -> None:
    signin(client)
    event = await make_event()
    other = await make_event("Other")
    mine = [
        (await client.post("/api/tickets", json={"title": f"T{i}", "price": 1, "eventId": event["id"]})).json()
        for i in range(6)
    ]
    await client.post("/api/tickets", json={"title": "Elsewhere", "price": 1, "eventId": other["id"]})
    await client.post("/api/tickets", json={"title": "No event", "price": 1})
    order_id, _ = await orders.created(mine[2]["id"])

    async def reserved() -> bool:
        ticket = await stored(mine[2]["id"])
        return ticket is not None and ticket.order_id == order_id

    await wait_until(reserved)
    listed: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"eventId": event["id"], "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/api/tickets", params=params)).json()
        listed += [t["id"] for t in body["tickets"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3
    assert listed == [t["id"] for t in reversed(mine) if t is not mine[2]]
    everything = (await client.get("/api/tickets")).json()["tickets"]
    assert len(everything) == 7  # the plain listing still shows every available ticket


async def test_the_listing_of_an_unknown_event_is_empty(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/tickets", params={"eventId": str(uuid.uuid4())})
    assert response.status_code == 200
    assert response.json() == {"tickets": [], "next": None}


@pytest.mark.parametrize("event_id", ["nope", "", "123"])
async def test_returns_400_when_the_listings_event_id_is_not_an_id(client: httpx.AsyncClient, event_id: str) -> None:
    response = await client.get("/api/tickets", params={"eventId": event_id})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Event id must be a valid id", "field": "eventId"}]}
