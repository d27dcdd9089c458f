"""The expiration service under test, against the session's real PostgreSQL and NATS, and a stand-in for the
orders service: it publishes order events as the orders service's outbox would and reads back what fired."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from ticketing_common.config import ServiceSettings
from ticketing_common.db import Database, Executor, cloudevent_headers, create_database
from ticketing_common.events import OrderCancelled, OrderCreated, OrderStatus
from ticketing_common.events.bus import ensure_stream
from ticketing_common.events.catalogue import OrderTicket, TicketRef, encode
from ticketing_common.testing import ServiceUnderTest, wait_until
from ticketing_expiration.config import Settings
from ticketing_expiration.main import MIGRATIONS_DIR, create_app
from ticketing_expiration.schedules import schedule_subject


@pytest.fixture
def service() -> ServiceUnderTest:
    return ServiceUnderTest(Settings, create_app, MIGRATIONS_DIR)


@dataclass(frozen=True)
class OrderExpiry:
    """An order's row of ``order_expiries``: what the service decided for it, its schedule (``expires_at`` and the
    outbox id of the schedule message) or, when ``order.cancelled`` came first, a tombstone (``cancelled_at``)."""

    order_id: uuid.UUID
    expires_at: datetime | None
    schedule_event_id: uuid.UUID | None
    cancelled_at: datetime | None
    recorded_at: datetime


async def _find_expiry(db: Executor, order_id: uuid.UUID) -> OrderExpiry | None:
    row = await db.fetchrow(
        "SELECT order_id, expires_at, schedule_event_id, cancelled_at, recorded_at FROM order_expiries"
        " WHERE order_id = $1",
        order_id,
    )
    return OrderExpiry(**dict(row)) if row is not None else None


FindExpiry = Callable[[Executor, uuid.UUID], Awaitable[OrderExpiry | None]]


@pytest.fixture
def find_expiry() -> FindExpiry:
    """Reads an order's row of ``order_expiries`` (the service itself reads it only inside its statements)."""
    return _find_expiry


@dataclass
class Fired:
    """An ``order.expired`` as JetStream stored it."""

    order_id: uuid.UUID
    data: dict[str, Any]
    headers: dict[str, str]
    stored_at: datetime
    sequence: int
    raw_data: bytes = b""


class OrdersBus:
    """Publishes ``order.created``/``order.cancelled`` like the orders service and reads ``order.expired`` back."""

    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self.js = js
        self.stream = stream

    async def created(
        self,
        order_id: uuid.UUID,
        expires_at: datetime,
        *,
        event_id: uuid.UUID | None = None,
        msg_id: str | None = None,
    ) -> uuid.UUID:
        """Publish ``order.created``; the same ``event_id`` with another ``msg_id`` is a redelivery."""
        event = OrderCreated(
            id=order_id,
            status=OrderStatus.CREATED,
            user_id=uuid.uuid4(),
            expires_at=expires_at,
            version=0,
            ticket=OrderTicket(id=uuid.uuid4(), price=Decimal("10")),
        )
        return await self._publish(event, event_id=event_id, msg_id=msg_id)

    async def cancelled(self, order_id: uuid.UUID) -> uuid.UUID:
        return await self._publish(OrderCancelled(id=order_id, version=1, ticket=TicketRef(id=uuid.uuid4())))

    async def _publish(
        self, event: OrderCreated | OrderCancelled, *, event_id: uuid.UUID | None = None, msg_id: str | None = None
    ) -> uuid.UUID:
        eid = event_id or uuid.uuid4()
        headers = cloudevent_headers(event_id=eid, subject=event.subject, source="orders", time=datetime.now(UTC))
        if msg_id is not None:
            headers["Nats-Msg-Id"] = msg_id
        await self.js.publish(event.subject, encode(event), stream=self.stream, headers=headers)
        return eid

    async def schedule(self, order_id: uuid.UUID) -> Any:
        """The order's pending schedule message in the stream, or None."""
        try:
            return await self.js.get_last_msg(self.stream, schedule_subject(order_id))
        except NotFoundError:
            return None

    async def wait_scheduled(self, order_id: uuid.UUID, timeout: float = 10.0) -> Any:
        return await wait_until(lambda: self.schedule(order_id), timeout=timeout)

    async def expired(self, wait: float = 0.3) -> list[Fired]:
        """Every ``order.expired`` in the stream, in stream order."""
        info = await self.js.stream_info(self.stream)
        if info.state.messages == 0:
            return []
        sub = await self.js.subscribe(
            "order.expired", stream=self.stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        fired: list[Fired] = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=wait)
                except TimeoutError:
                    break
                data = json.loads(msg.data)
                fired.append(
                    Fired(
                        uuid.UUID(data["orderId"]),
                        data,
                        dict(msg.headers or {}),
                        msg.metadata.timestamp,
                        msg.metadata.sequence.stream,
                        msg.data,
                    )
                )
        finally:
            await sub.unsubscribe()
        return fired

    async def wait_expired(self, count: int, timeout: float = 10.0) -> list[Fired]:
        """Wait until at least ``count`` ``order.expired`` are in the stream; returns them all."""

        async def enough() -> list[Fired] | None:
            fired = await self.expired(wait=0.1)
            return fired if len(fired) >= count else None

        return await wait_until(enough, timeout=timeout, interval=0.05)


@pytest.fixture
def bus(js: JetStreamContext, settings: ServiceSettings) -> OrdersBus:
    return OrdersBus(js, settings.nats_stream)


@pytest.fixture
async def db(settings: ServiceSettings, js: JetStreamContext) -> AsyncIterator[Database]:
    """The service's database and stream without the service: nothing publishes what its units of work stage."""
    await ensure_stream(js, settings.nats_stream)
    db = await create_database(settings.database_dsn, service=settings.service_name, size=4)
    try:
        yield db
    finally:
        await db.pool.close()
