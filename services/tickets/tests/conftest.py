"""The tickets service under test, against the session's real PostgreSQL and NATS.

Fixtures here play the other services: ``orders`` publishes order events to JetStream as the orders
service's outbox publisher would, and ``published`` reads back what this service really put on the bus.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.db import cloudevent_headers
from ticketing_common.events import Event, OrderCancelled, OrderCreated, OrderStatus
from ticketing_common.events.catalogue import OrderTicket, TicketRef, encode
from ticketing_common.testing import ServiceUnderTest
from ticketing_tickets import queries
from ticketing_tickets.config import Settings
from ticketing_tickets.main import MIGRATIONS_DIR, create_app
from ticketing_tickets.queries import Ticket


@pytest.fixture
def service() -> ServiceUnderTest:
    return ServiceUnderTest(Settings, create_app, MIGRATIONS_DIR)


@pytest.fixture
def make_ticket(client: httpx.AsyncClient) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Create a ticket through the API as whoever ``client`` is signed in as; returns its JSON."""

    async def make(title: str = "Concert", price: float | str = 20) -> dict[str, Any]:
        response = await client.post("/api/tickets", json={"title": title, "price": price})
        assert response.status_code == 201, response.text
        ticket: dict[str, Any] = response.json()
        return ticket

    return make


@pytest.fixture
def make_event(client: httpx.AsyncClient) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Create an event through the API as whoever ``client`` is signed in as; returns its JSON. Any field of the
    body can be given (snake_case or camelCase); by default a concert a week from now, on sale now."""

    async def make(name: str = "Concert", venue: str = "Arena", **fields: Any) -> dict[str, Any]:
        week = (datetime.now(UTC) + timedelta(days=7)).isoformat()
        body = {"name": name, "venue": venue, "startsAt": week, **fields}
        response = await client.post("/api/events", json=body)
        assert response.status_code == 201, response.text
        event: dict[str, Any] = response.json()
        return event

    return make


@dataclass
class Orders:
    """Publishes order events straight to JetStream, with the headers the orders service gives them."""

    js: JetStreamContext

    async def publish(
        self, event: Event, *, event_id: uuid.UUID | None = None, dedup_id: str | None = None
    ) -> uuid.UUID:
        eid = event_id or uuid.uuid4()
        headers = cloudevent_headers(event_id=eid, subject=event.subject, source="orders", time=datetime.now(UTC))
        if dedup_id is not None:
            # A redelivery outside JetStream's duplicate window: same event id, stored again.
            headers["Nats-Msg-Id"] = dedup_id
        await self.js.publish(event.subject, encode(event), headers=headers)
        return eid

    @staticmethod
    def created_event(ticket_id: str | uuid.UUID, order_id: uuid.UUID | None = None) -> OrderCreated:
        return OrderCreated(
            id=order_id or uuid.uuid4(),
            status=OrderStatus.CREATED,
            user_id=uuid.uuid4(),
            expires_at=datetime.now(UTC) + timedelta(minutes=15),
            version=0,
            ticket=OrderTicket(id=uuid.UUID(str(ticket_id)), price=Decimal(20)),
        )

    @staticmethod
    def cancelled_event(ticket_id: str | uuid.UUID, order_id: uuid.UUID) -> OrderCancelled:
        return OrderCancelled(id=order_id, version=1, ticket=TicketRef(id=uuid.UUID(str(ticket_id))))

    async def created(
        self, ticket_id: str | uuid.UUID, order_id: uuid.UUID | None = None, **kwargs: Any
    ) -> tuple[uuid.UUID, uuid.UUID]:
        """Publish ``order.created`` for the ticket; returns (order id, event id)."""
        event = self.created_event(ticket_id, order_id)
        return event.id, await self.publish(event, **kwargs)

    async def cancelled(self, ticket_id: str | uuid.UUID, order_id: uuid.UUID, **kwargs: Any) -> uuid.UUID:
        """Publish ``order.cancelled`` for the order; returns the event id."""
        return await self.publish(self.cancelled_event(ticket_id, order_id), **kwargs)


@pytest.fixture
def orders(js: JetStreamContext) -> Orders:
    return Orders(js)


@pytest.fixture
def stored(app: FastAPI) -> Callable[[str | uuid.UUID], Awaitable[Ticket | None]]:
    """The ticket row as the database has it."""

    async def load(ticket_id: str | uuid.UUID) -> Ticket | None:
        return await queries.find_ticket(app.state.db.pool, uuid.UUID(str(ticket_id)))

    return load
