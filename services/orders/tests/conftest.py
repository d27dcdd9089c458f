"""The orders service under test, against the session's real PostgreSQL and NATS, and a harness that plays
the other services: it publishes their events straight to JetStream and looks at what orders did."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.db import cloudevent_headers
from ticketing_common.events import BuyerAdmitted, Event, EventCreated, OrderStatus, TicketCreated
from ticketing_common.events.catalogue import encode
from ticketing_common.testing import ServiceUnderTest, http_client, running, wait_until
from ticketing_orders.config import Settings
from ticketing_orders.main import MIGRATIONS_DIR, create_app
from ticketing_orders.queries import Charge, EventCopy, Order, Ticket, find_order


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
        self,
        *,
        title: str = "Concert",
        price: Decimal = Decimal("20.00"),
        seller: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
    ) -> TicketCreated:
        """A ticket the tickets service created (for ``event_id``, or of no event), once the orders service has
        its copy."""
        event = TicketCreated(
            id=uuid.uuid4(), title=title, price=price, user_id=seller or uuid.uuid4(), version=0, event_id=event_id
        )
        await self.publish(event)
        await wait_until(lambda: self.ticket(event.id))
        return event

    async def add_event(
        self,
        *,
        on_sale_at: datetime | None = None,
        max_per_buyer: int = 4,
        waiting_room: bool = False,
        copied: bool = True,
    ) -> EventCreated:
        """An event the tickets service created (on sale since an hour ago unless ``on_sale_at``), once the orders
        service has its copy (unless not ``copied``: then only built, not published)."""
        event = self.new_event(on_sale_at=on_sale_at, max_per_buyer=max_per_buyer, waiting_room=waiting_room)
        if copied:
            await self.publish(event)
            await wait_until(lambda: self.event_copy(event.id))
        return event

    async def admit(
        self, event_id: uuid.UUID, user_id: uuid.UUID, *, until: datetime | None = None, wait: bool = True
    ) -> BuyerAdmitted:
        """The queue admits the buyer to the event until ``until`` (default: ten minutes from now); once the
        orders service has stored it, unless not ``wait``."""
        admission = BuyerAdmitted(
            event_id=event_id,
            user_id=user_id,
            position=1,
            admitted_until=until or datetime.now(UTC) + timedelta(minutes=10),
        )
        await self.publish(admission)
        if wait:

            async def stored() -> bool:
                return await self.admission(event_id, user_id) == admission.admitted_until

            await wait_until(stored)
        return admission

    @staticmethod
    def new_event(
        *,
        event_id: uuid.UUID | None = None,
        on_sale_at: datetime | None = None,
        max_per_buyer: int = 4,
        waiting_room: bool = False,
    ) -> EventCreated:
        """What the tickets service publishes for a new event (on sale since an hour ago unless ``on_sale_at``)."""
        now = datetime.now(UTC)
        return EventCreated(
            id=event_id or uuid.uuid4(),
            name="Concert",
            venue="Arena",
            starts_at=now + timedelta(days=30),
            on_sale_at=on_sale_at or now - timedelta(hours=1),
            max_per_buyer=max_per_buyer,
            waiting_room=waiting_room,
            user_id=uuid.uuid4(),
            version=0,
        )

    async def waiting(self, count: int, app: FastAPI | None = None) -> None:
        """Wait until ``count`` orders wait for an event's copy or an admission in ``app`` (default: this one)."""
        waits = (app or self.app).state.sale_waits

        async def reached() -> bool:
            return bool(waits.waiting == count)

        await wait_until(reached)

    async def event_copy(self, event_id: uuid.UUID) -> EventCopy | None:
        row = await self.pool.fetchrow(
            "SELECT id, on_sale_at, max_per_buyer, waiting_room, version FROM events WHERE id = $1", event_id
        )
        return None if row is None else EventCopy(**dict(row))

    async def admission(self, event_id: uuid.UUID, user_id: uuid.UUID) -> datetime | None:
        """The end of the buyer's admission to the event as stored (None: none)."""
        until: datetime | None = await self.pool.fetchval(
            "SELECT admitted_until FROM admissions WHERE event_id = $1 AND user_id = $2", event_id, user_id
        )
        return until

    @property
    def pool(self) -> asyncpg.Pool:
        pool: asyncpg.Pool = self.app.state.db.pool
        return pool

    async def ticket(self, ticket_id: uuid.UUID) -> Ticket | None:
        row = await self.pool.fetchrow(
            "SELECT id, title, price, user_id, version, event_id FROM tickets WHERE id = $1", ticket_id
        )
        return None if row is None else Ticket(**dict(row))

    async def order(self, order_id: uuid.UUID | str) -> Order | None:
        return await find_order(self.pool, uuid.UUID(str(order_id)))

    async def set_status(self, order_id: uuid.UUID | str, status: OrderStatus) -> None:
        """Put an order in a state no route of this service leads to (e.g. ``complete`` without a charge)."""
        changed = await self.pool.execute(
            "UPDATE orders SET status = $2 WHERE id = $1", uuid.UUID(str(order_id)), status.value
        )
        assert changed == "UPDATE 1"

    async def charges(self) -> list[Charge]:
        rows = await self.pool.fetch(
            "SELECT id, order_id, stripe_id, amount, currency, refund_reason, received_at FROM charges"
            " ORDER BY received_at"
        )
        return [Charge(**dict(row)) for row in rows]

    async def outbox(self, subject: str) -> list[dict[str, Any]]:
        """Payloads the service staged on ``subject``, sent or not: an event not here will never be sent."""
        rows = await self.pool.fetch("SELECT payload FROM outbox WHERE subject = $1 ORDER BY id", subject)
        return [json.loads(row["payload"]) for row in rows]

    async def count_orders(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM orders"))

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


Replica = Callable[..., contextlib.AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
def replica(settings: Settings) -> Replica:
    """Another replica of the service on the same database and bus, with some settings changed, once it hears
    the copies other replicas announce."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        app = create_app(settings.model_copy(update=overrides))
        async with running(app), http_client(app) as client:

            async def hears_other_replicas() -> bool:
                return bool(app.state.sale_waits.hears_other_replicas)

            await wait_until(hears_other_replicas)
            yield app, client

    return start
