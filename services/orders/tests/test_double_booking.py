"""No double booking, enforced by the database: however many buyers race, one active order per ticket."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import httpx
import pytest
from nats.js import JetStreamContext
from sqlalchemy.exc import IntegrityError

from ticketing_common.auth import COOKIE_NAME, create_token
from ticketing_common.db import utcnow
from ticketing_common.testing import TEST_JWT_KEY, http_client, running, stream_events, wait_for_events
from ticketing_orders.config import Settings
from ticketing_orders.main import create_app
from ticketing_orders.models import Order
from ticketing_orders.service import violated_constraint

if TYPE_CHECKING:
    from conftest import Harness

BUYERS = 50


def _session_cookie(user_id: uuid.UUID) -> str:
    token = create_token(user_id=user_id, email=f"{user_id.hex[:8]}@example.com", key=TEST_JWT_KEY, expires_seconds=600)
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

    def order(status: str) -> Order:
        return Order(id=uuid.uuid4(), user_id=uuid.uuid4(), status=status, expires_at=utcnow(), ticket_id=ticket.id)

    async with bus.app.state.sessionmaker() as session, session.begin():
        session.add_all([order("cancelled"), order("cancelled"), order("created")])
    for active in ("created", "awaiting:payment", "complete"):
        with pytest.raises(IntegrityError) as refused:
            async with bus.app.state.sessionmaker() as session, session.begin():
                session.add(order(active))
        assert violated_constraint(refused.value) == "uq_orders_active_ticket"
