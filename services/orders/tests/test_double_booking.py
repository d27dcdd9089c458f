"""No double booking, enforced by the database: however many buyers race, one active order per ticket."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import asyncpg
import httpx
import pytest
from nats.js import JetStreamContext

from ticketing_common.auth import COOKIE_NAME
from ticketing_common.db import utcnow, violated_constraint
from ticketing_common.testing import http_client, running, session_token, stream_events, wait_for_events
from ticketing_orders.config import Settings
from ticketing_orders.main import create_app
from ticketing_orders.queries import OrderAttempt, insert_order

if TYPE_CHECKING:
    from conftest import Harness

BUYERS = 50


def _session_cookie(user_id: uuid.UUID) -> str:
    token = session_token(user_id=user_id, expires_seconds=600)
    return f"{COOKIE_NAME}={token}"


async def test_fifty_concurrent_buyers_on_two_replicas_get_exactly_one_order(
    settings: Settings, bus: Harness, js: JetStreamContext
) -> None:
    ticket = await bus.add_ticket()
    # A second replica of the service on the same database: half of the buyers go to each.
    other = create_app(settings)
    async with running(other), http_client(bus.app) as first, http_client(other) as second:
        replicas = [first, second]
        start = asyncio.Event()

        async def buy(n: int) -> httpx.Response:
            await start.wait()
            return await replicas[n % 2].post(
                "/api/orders",
                json={"ticketId": str(ticket.id)},
                headers={"cookie": _session_cookie(uuid.uuid4())},
            )

        attempts = [asyncio.create_task(buy(n)) for n in range(BUYERS)]
        await asyncio.sleep(0.05)
        start.set()
        responses = await asyncio.gather(*attempts)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 400: BUYERS - 1}
    refusals = {str(r.json()) for r in responses if r.status_code == 400}
    assert refusals == {str({"errors": [{"message": "Ticket is already reserved"}]})}
    [winner] = [r.json() for r in responses if r.status_code == 201]
    assert await bus.count_orders() == 1
    [event] = await wait_for_events(js, "order.created", 1)
    assert event.data["id"] == winner["id"]
    await asyncio.sleep(0.3)
    assert len(await stream_events(js, "order.created")) == 1


async def test_the_database_refuses_a_second_active_order_for_a_ticket(bus: Harness) -> None:
    ticket = await bus.add_ticket()

    async def insert(status: str) -> None:
        await bus.pool.execute(
            "INSERT INTO orders (id, user_id, status, expires_at, version, ticket_id) VALUES ($1, $2, $3, $4, 0, $5)",
            uuid.uuid4(),
            uuid.uuid4(),
            status,
            utcnow(),
            ticket.id,
        )

    for status in ("cancelled", "cancelled", "created"):
        await insert(status)
    for active in ("created", "complete"):
        with pytest.raises(asyncpg.UniqueViolationError) as refused:
            await insert(active)
        assert violated_constraint(refused.value) == "uq_orders_active_ticket"
    assert await bus.count_orders() == 3


@pytest.mark.parametrize("first_buyer", ["commits", "rolls back"])
async def test_an_order_racing_an_uncommitted_order_for_the_ticket_waits_for_it_then_answers_from_the_statement(
    bus: Harness, first_buyer: str
) -> None:
    ticket = await bus.add_ticket()

    async def place(conn: asyncpg.Connection) -> OrderAttempt:
        return await insert_order(
            conn, order_id=uuid.uuid4(), user_id=uuid.uuid4(), ticket_id=ticket.id, expires_at=utcnow()
        )

    async with bus.pool.acquire() as first, bus.pool.acquire() as second:
        first_tx = first.transaction()
        await first_tx.start()
        assert (await place(first)).inserted
        async with second.transaction():
            racing = asyncio.create_task(place(second))
            await asyncio.sleep(0.2)
            assert not racing.done()  # the index makes it wait for the first order's outcome
            await (first_tx.commit() if first_buyer == "commits" else first_tx.rollback())
            attempt = await racing  # no unique violation: the result says whether it got the ticket
            assert attempt.ticket is not None
            assert attempt.inserted is (first_buyer == "rolls back")
            assert await second.fetchval("SELECT 1") == 1  # the transaction is still usable

    assert await bus.count_orders() == 1
