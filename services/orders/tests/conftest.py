"""The orders service under test, against the session's real PostgreSQL and NATS, and a harness that plays
the other services: it publishes their events straight to JetStream and looks at what orders did."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext
from sqlalchemy import func, select

from ticketing_common.events import Event, OrderStatus, TicketCreated
from ticketing_common.events.catalogue import encode
from ticketing_common.events.publisher import cloudevent_headers
from ticketing_common.events.tables import OutboxRow
from ticketing_common.testing import ServiceUnderTest, wait_until
from ticketing_orders.config import Settings
from ticketing_orders.main import MIGRATIONS_DIR, create_app
from ticketing_orders.models import Charge, Order, Ticket


@pytest.fixture
def service() -> ServiceUnderTest:
    return ServiceUnderTest(Settings, create_app, MIGRATIONS_DIR)


@dataclass
class Harness:
    """Publishes other services' events to JetStream and reads the orders service's state and metrics."""

    app: FastAPI
    js: JetStreamContext

    async def publish(self, event: Event, *, event_id: uuid.UUID | None = None, msg_id: str | None = None) -> uuid.UUID:
        """Publish as another service's relay would; ``msg_id`` (JetStream's dedup key) defaults to the event id."""
        eid = event_id or uuid.uuid4()
        headers = cloudevent_headers(event_id=eid, subject=event.subject, source="test", time=datetime.now(UTC))
        if msg_id is not None:
            headers["Nats-Msg-Id"] = msg_id
        await self.js.publish(event.subject, encode(event), headers=headers)
        return eid

    async def add_ticket(
        self, *, title: str = "Concert", price: Decimal = Decimal("20.00"), seller: uuid.UUID | None = None
    ) -> TicketCreated:
        """A ticket the tickets service created, once the orders service has its copy."""
        event = TicketCreated(id=uuid.uuid4(), title=title, price=price, user_id=seller or uuid.uuid4(), version=0)
        await self.publish(event)
        await wait_until(lambda: self.ticket(event.id))
        return event

    async def ticket(self, ticket_id: uuid.UUID) -> Ticket | None:
        async with self.app.state.sessionmaker() as session:
            ticket: Ticket | None = await session.get(Ticket, ticket_id)
            return ticket

    async def order(self, order_id: uuid.UUID | str) -> Order | None:
        async with self.app.state.sessionmaker() as session:
            order: Order | None = await session.get(Order, uuid.UUID(str(order_id)))
            return order

    async def set_status(self, order_id: uuid.UUID | str, status: OrderStatus) -> None:
        """Put an order in a state no route of this service leads to (e.g. ``awaiting:payment``)."""
        async with self.app.state.sessionmaker() as session, session.begin():
            order = await session.get(Order, uuid.UUID(str(order_id)))
            assert order is not None
            order.status = status.value

    async def charges(self) -> list[Charge]:
        async with self.app.state.sessionmaker() as session:
            return list((await session.scalars(select(Charge).order_by(Charge.received_at))).all())

    async def outbox(self, subject: str) -> list[dict[str, Any]]:
        """Payloads the service staged on ``subject``, sent or not: an event not here will never be sent."""
        async with self.app.state.sessionmaker() as session:
            rows = await session.scalars(select(OutboxRow).where(OutboxRow.subject == subject).order_by(OutboxRow.id))
            return [row.payload for row in rows]

    async def count_orders(self) -> int:
        async with self.app.state.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(Order)) or 0)

    def handled(self, subject: str, outcome: str = "ok") -> int:
        """How many ``subject`` events the listeners settled with ``outcome`` (ok, duplicate, not_yet, ...)."""
        return int(self.app.state.metrics.events_handled.labels(subject, outcome)._value.get())

    async def wait_handled(self, subject: str, count: int, outcome: str = "ok", *, timeout: float = 15.0) -> None:
        """Wait until ``count`` events of ``subject`` were settled with ``outcome``."""

        async def reached() -> bool:
            return self.handled(subject, outcome) >= count

        await wait_until(reached, timeout=timeout)


@pytest.fixture
def bus(app: FastAPI, js: JetStreamContext) -> Harness:
    return Harness(app, js)
