"""POST /api/orders: reserve a ticket, publish order.created."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.db import utcnow
from ticketing_common.events import OrderStatus, TicketUpdated
from ticketing_common.testing import (
    UNREACHABLE_JWKS_URL,
    http_client,
    recorded_statements,
    running,
    signin,
    wait_for_events,
)
from ticketing_orders import queries
from ticketing_orders.config import Settings
from ticketing_orders.main import create_app
from ticketing_orders.queries import insert_order

if TYPE_CHECKING:
    from conftest import Harness

TICKET_ID_ERROR = {"errors": [{"message": "TicketId must be provided", "field": "ticketId"}]}


def _parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value  # ISO 8601 in UTC
    return datetime.fromisoformat(value)


async def test_returns_201_with_the_order_and_its_ticket(client: httpx.AsyncClient, bus: Harness) -> None:
    ticket = await bus.add_ticket(title="Concert", price=Decimal("19.99"))
    buyer = signin(client)

    before = datetime.now(UTC)
    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})
    after = datetime.now(UTC)

    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"],
        "userId": str(buyer.id),
        "status": "created",
        "expiresAt": body["expiresAt"],
        "version": 0,
        "ticket": {"id": str(ticket.id), "title": "Concert", "price": 19.99, "version": 0},
    }
    uuid.UUID(body["id"])
    expires_at = _parse_time(body["expiresAt"])
    assert before + timedelta(seconds=900) <= expires_at <= after + timedelta(seconds=900)
    order = await bus.order(body["id"])
    assert order is not None
    assert (order.status, order.version, order.user_id, order.ticket_id) == ("created", 0, buyer.id, ticket.id)


async def test_publishes_order_created_with_the_ticket_price(
    client: httpx.AsyncClient, bus: Harness, js: JetStreamContext
) -> None:
    ticket = await bus.add_ticket(price=Decimal("42.50"))
    buyer = signin(client)
    body = (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).json()

    [event] = await wait_for_events(js, "order.created", 1)
    assert event.data == {
        "id": body["id"],
        "status": "created",
        "userId": str(buyer.id),
        "expiresAt": body["expiresAt"],
        "version": 0,
        "ticket": {"id": str(ticket.id), "price": 42.5},
    }
    assert event.headers["ce-type"] == "order.created"
    assert event.headers["ce-source"] == "orders"


async def test_expiry_follows_the_order_expiration_seconds_setting(
    settings: Settings, bus: Harness, js: JetStreamContext
) -> None:
    ticket = await bus.add_ticket()
    short = create_app(settings.model_copy(update={"order_expiration_seconds": 60}))
    async with running(short), http_client(short) as client:
        signin(client)
        before = datetime.now(UTC)
        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})
        after = datetime.now(UTC)
    assert response.status_code == 201
    expires_at = _parse_time(response.json()["expiresAt"])
    assert before + timedelta(seconds=60) <= expires_at <= after + timedelta(seconds=60)


def test_order_expiration_seconds_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWKS_URL", UNREACHABLE_JWKS_URL)
    assert Settings().order_expiration_seconds == 900
    monkeypatch.setenv("ORDER_EXPIRATION_SECONDS", "120")
    assert Settings().order_expiration_seconds == 120
    monkeypatch.setenv("ORDER_EXPIRATION_SECONDS", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        Settings()


async def test_the_order_shows_the_ticket_as_the_replica_knows_it_now(client: httpx.AsyncClient, bus: Harness) -> None:
    ticket = await bus.add_ticket(title="Old", price=Decimal("10"))
    await bus.publish(
        TicketUpdated(
            id=ticket.id, title="New", price=Decimal("12.5"), user_id=ticket.user_id, order_id=None, version=1
        )
    )
    await bus.wait_handled("ticket.updated", 1)
    signin(client)

    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 201
    assert response.json()["ticket"] == {"id": str(ticket.id), "title": "New", "price": 12.5, "version": 1}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ticketId": None},
        {"ticketId": ""},
        {"ticketId": "   "},
        {"ticketId": "not-an-id"},
        {"ticketId": "123"},
        {"ticketId": 123},
        {"ticketId": ["7f8b3a6e-0d1c-4c55-9f4e-2b8f4c7e9a10"]},
        {"ticket": "7f8b3a6e-0d1c-4c55-9f4e-2b8f4c7e9a10"},
    ],
    ids=["missing", "null", "empty", "blank", "word", "digits", "number", "list", "wrong-name"],
)
async def test_returns_400_when_ticket_id_is_missing_or_not_an_id(
    client: httpx.AsyncClient, bus: Harness, body: dict[str, Any]
) -> None:
    signin(client)

    response = await client.post("/api/orders", json=body)

    assert response.status_code == 400
    assert response.json() == TICKET_ID_ERROR
    assert await bus.count_orders() == 0


async def test_returns_400_when_the_body_is_not_a_json_object(client: httpx.AsyncClient) -> None:
    signin(client)
    response = await client.post("/api/orders", json=["7f8b3a6e-0d1c-4c55-9f4e-2b8f4c7e9a10"])
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"]


async def test_returns_404_when_the_ticket_is_unknown(client: httpx.AsyncClient, bus: Harness) -> None:
    signin(client)

    response = await client.post("/api/orders", json={"ticketId": str(uuid.uuid4())})

    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Ticket not found"}]}
    assert await bus.count_orders() == 0


async def test_returns_400_when_buying_your_own_ticket(
    client: httpx.AsyncClient, bus: Harness, js: JetStreamContext
) -> None:
    seller = signin(client)
    ticket = await bus.add_ticket(seller=seller.id)

    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "You cannot buy your own ticket"}]}
    assert await bus.count_orders() == 0
    assert await bus.outbox("order.created") == []


async def test_returns_400_when_ticket_is_reserved(client: httpx.AsyncClient, bus: Harness) -> None:
    ticket = await bus.add_ticket()
    signin(client)
    first = await client.post("/api/orders", json={"ticketId": str(ticket.id)})
    assert first.status_code == 201
    signin(client)  # someone else

    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Ticket is already reserved"}]}
    assert await bus.count_orders() == 1
    assert len(await bus.outbox("order.created")) == 1


async def test_an_attempt_on_a_held_ticket_is_refused_by_one_read_without_a_transaction(
    app: FastAPI, client: httpx.AsyncClient, bus: Harness
) -> None:
    ticket = await bus.add_ticket()
    signin(client)
    assert (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).status_code == 201
    signin(client)  # someone else, as in a sale

    async with recorded_statements(app) as sent:
        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 400
    assert sent == [queries.FIND_TICKET_FOR_ORDER]


async def test_a_placed_order_is_one_read_and_one_statement_writing_the_order_with_its_event(
    app: FastAPI, client: httpx.AsyncClient, bus: Harness
) -> None:
    ticket = await bus.add_ticket()
    signin(client)

    async with recorded_statements(app) as sent:
        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 201
    assert sent == [queries.FIND_TICKET_FOR_ORDER, queries.INSERT_ORDER]  # no BEGIN, no COMMIT: one statement
    assert [event["id"] for event in await bus.outbox("order.created")] == [response.json()["id"]]


async def test_an_order_placed_while_the_ticket_changes_is_placed_on_the_new_version_with_its_price(
    app: FastAPI, client: httpx.AsyncClient, bus: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket = await bus.add_ticket(price=Decimal("20.00"))
    read = queries.find_ticket_for_order
    reads = 0

    async def read_then_change_the_ticket(*args: Any, **kwargs: Any) -> queries.TicketAvailability:
        nonlocal reads
        reads += 1
        found = await read(*args, **kwargs)
        if reads == 1:  # between this read and the insert, a ticket.updated is applied
            await bus.pool.execute("UPDATE tickets SET price = 35, version = version + 1 WHERE id = $1", ticket.id)
        return found

    monkeypatch.setattr(queries, "find_ticket_for_order", read_then_change_the_ticket)
    signin(client)

    async with recorded_statements(app) as sent:
        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 201
    assert response.json()["ticket"]["price"] == 35
    ours = [statement for statement in sent if not statement.startswith("UPDATE tickets")]
    assert ours == [queries.FIND_TICKET_FOR_ORDER, queries.INSERT_ORDER] * 2  # the first insert wrote nothing
    [created] = await bus.outbox("order.created")
    assert (created["id"], created["ticket"]["price"]) == (response.json()["id"], 35)
    assert await bus.count_orders() == 1


async def test_a_refused_insert_writes_no_event(bus: Harness) -> None:
    ticket = await bus.add_ticket()
    staged = ([uuid.uuid4()], ["order.created"], ['{"refused": true}'], ["{}"])

    async def place(version: int) -> bool:
        attempt = await insert_order(
            bus.pool,
            order_id=uuid.uuid4(),
            user_id=uuid.uuid4(),
            ticket_id=ticket.id,
            expires_at=utcnow(),
            version=version,
            events=staged,
        )
        return attempt.inserted

    assert not await place(version=1)  # a version this copy does not have
    assert await bus.outbox("order.created") == []
    assert await place(version=0)
    assert not await place(version=0)  # reserved by the order just placed
    assert await bus.outbox("order.created") == [{"refused": True}]


async def test_returns_400_when_the_same_buyer_orders_the_ticket_again(client: httpx.AsyncClient, bus: Harness) -> None:
    ticket = await bus.add_ticket()
    signin(client)
    assert (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).status_code == 201

    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Ticket is already reserved"}]}


async def test_returns_400_when_ticket_is_held_by_a_complete_order(client: httpx.AsyncClient, bus: Harness) -> None:
    ticket = await bus.add_ticket()
    signin(client)
    held = (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).json()
    await bus.set_status(held["id"], OrderStatus.COMPLETE)
    signin(client)

    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Ticket is already reserved"}]}


async def test_returns_201_for_a_ticket_whose_previous_order_was_cancelled(
    client: httpx.AsyncClient, bus: Harness
) -> None:
    ticket = await bus.add_ticket()
    signin(client)
    cancelled = (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).json()
    assert (await client.delete(f"/api/orders/{cancelled['id']}")).status_code == 204
    next_buyer = signin(client)

    response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

    assert response.status_code == 201
    assert response.json()["userId"] == str(next_buyer.id)
    assert response.json()["id"] != cancelled["id"]
    assert await bus.count_orders() == 2


async def test_every_route_returns_401_when_not_signed_in(app: FastAPI, bus: Harness) -> None:
    ticket = await bus.add_ticket()
    some_id = uuid.uuid4()
    async with http_client(app) as anonymous:
        responses = [
            await anonymous.post("/api/orders", json={"ticketId": str(ticket.id)}),
            await anonymous.post("/api/orders", json={}),
            await anonymous.get("/api/orders"),
            await anonymous.get(f"/api/orders/{some_id}"),
            await anonymous.delete(f"/api/orders/{some_id}"),
        ]
    for response in responses:
        assert response.status_code == 401
        assert response.json() == {"errors": [{"message": "Not authorized"}]}
    assert await bus.count_orders() == 0


async def test_one_statement_tells_an_unknown_ticket_your_own_a_reserved_one_and_a_placed_order_apart(
    bus: Harness,
) -> None:
    seller = uuid.uuid4()
    ticket = await bus.add_ticket(seller=seller)

    async with bus.pool.acquire() as conn, conn.transaction():

        async def place(ticket_id: uuid.UUID, buyer: uuid.UUID) -> tuple[bool, bool]:
            attempt = await insert_order(
                conn, order_id=uuid.uuid4(), user_id=buyer, ticket_id=ticket_id, expires_at=datetime.now(UTC)
            )
            return attempt.ticket is not None, attempt.inserted

        # Refusals are results, not errors: each answer leaves the transaction usable for the next.
        assert await place(uuid.uuid4(), uuid.uuid4()) == (False, False)  # unknown ticket
        assert await place(ticket.id, seller) == (True, False)  # the seller's own
        assert await place(ticket.id, uuid.uuid4()) == (True, True)  # placed
        assert await place(ticket.id, uuid.uuid4()) == (True, False)  # reserved by the order just placed
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE ticket_id = $1", ticket.id) == 1
