"""The limit per buyer holds under concurrency: one buyer's orders of one event are placed one at a time, on any
replica, so however many they send at once, at most maxPerBuyer are placed."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from ticketing_common.auth import COOKIE_NAME
from ticketing_common.db import utcnow
from ticketing_common.testing import http_client, running, session_token
from ticketing_orders import domain
from ticketing_orders.config import Settings
from ticketing_orders.main import create_app
from ticketing_orders.queries import OrderAttempt, insert_order, lock_buyer_at_event

if TYPE_CHECKING:
    import asyncpg
    from conftest import Harness

LIMIT = 2
TICKETS = 8


async def test_one_buyers_concurrent_orders_of_one_event_on_two_replicas_stop_at_the_limit(
    settings: Settings, bus: Harness
) -> None:
    event = await bus.add_event(max_per_buyer=LIMIT)
    tickets = [await bus.add_ticket(event_id=event.id) for _ in range(TICKETS)]
    buyer, other_buyer = uuid.uuid4(), uuid.uuid4()
    cookies = {who: f"{COOKIE_NAME}={session_token(user_id=who, expires_seconds=600)}" for who in (buyer, other_buyer)}
    other = create_app(settings)
    async with running(other), http_client(bus.app) as first, http_client(other) as second:
        replicas = [first, second]
        start = asyncio.Event()

        async def buy(n: int, who: uuid.UUID) -> httpx.Response:
            await start.wait()
            return await replicas[n % 2].post(
                "/api/orders", json={"ticketId": str(tickets[n].id)}, headers={"cookie": cookies[who]}
            )

        # One buyer tries six different tickets at once, and someone else two more: the other buyer's
        # orders are not held up nor counted.
        attempts = [asyncio.create_task(buy(n, buyer)) for n in range(TICKETS - 2)]
        attempts += [asyncio.create_task(buy(n, other_buyer)) for n in range(TICKETS - 2, TICKETS)]
        await asyncio.sleep(0.05)
        start.set()
        responses = await asyncio.gather(*attempts)

    mine, theirs = responses[: TICKETS - 2], responses[TICKETS - 2 :]
    assert Counter(r.status_code for r in mine) == {201: LIMIT, 400: TICKETS - 2 - LIMIT}
    refusals = {r.json()["errors"][0]["message"] for r in mine if r.status_code == 400}
    assert refusals == {f"You may buy at most {LIMIT} tickets of this event"}
    assert [r.status_code for r in theirs] == [201, 201]
    held = await bus.pool.fetchval("SELECT count(*) FROM orders WHERE user_id = $1 AND status = 'created'", buyer)
    assert held == LIMIT
    assert len(await bus.outbox("order.created")) == LIMIT + 2


@pytest.mark.parametrize("first_order", ["commits", "rolls back"])
async def test_an_order_racing_the_same_buyers_uncommitted_order_of_the_event_waits_for_it_then_counts_it(
    bus: Harness, first_order: str
) -> None:
    event = await bus.add_event(max_per_buyer=1)
    first_ticket, second_ticket = await bus.add_ticket(event_id=event.id), await bus.add_ticket(event_id=event.id)
    buyer = uuid.uuid4()

    async def place(conn: asyncpg.Connection, ticket_id: uuid.UUID) -> OrderAttempt:
        # As the use case does: the buyer's lock for the event, then the insert (a statement of its own, so it
        # counts what was committed while it waited for the lock).
        await lock_buyer_at_event(conn, domain.buyer_event_lock_key(buyer, event.id))
        now = utcnow()
        return await insert_order(
            conn,
            order_id=uuid.uuid4(),
            user_id=buyer,
            ticket_id=ticket_id,
            expires_at=now + timedelta(minutes=15),
            now=now,
            event_id=event.id,
        )

    async with bus.pool.acquire() as first, bus.pool.acquire() as second:
        first_tx = first.transaction()
        await first_tx.start()
        assert (await place(first, first_ticket.id)).inserted
        async with second.transaction():
            racing = asyncio.create_task(place(second, second_ticket.id))  # another ticket: no index to wait on
            await asyncio.sleep(0.2)
            assert not racing.done()  # the buyer's lock makes it wait for the first order's outcome
            await (first_tx.commit() if first_order == "commits" else first_tx.rollback())
            attempt = await racing
            assert attempt.inserted is (first_order == "rolls back")
            assert attempt.sale.holds == (1 if first_order == "commits" else 0)

    assert await bus.count_orders() == 1
