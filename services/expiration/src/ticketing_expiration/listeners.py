"""Entry points of the expiration service: ``order.created`` schedules, ``order.cancelled`` unschedules."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from nats.js import JetStreamContext

from ticketing_common.db import UnitOfWork
from ticketing_common.events import EventContext, Listener, OrderCancelled, OrderCreated
from ticketing_expiration.config import Settings
from ticketing_expiration.schedules import remove_schedule
from ticketing_expiration.service import cancel_expiry, schedule_expiries, schedule_expiry

JetStreamProvider = Callable[[], JetStreamContext | None]
"""The running app's JetStream connection (None until it is connected)."""


class OrderCreatedListener(Listener[OrderCreated]):
    """Write the order's schedule message (through the outbox) that fires ``order.expired`` at ``expiresAt``."""

    event = OrderCreated

    async def handle(self, event: OrderCreated, uow: UnitOfWork, context: EventContext) -> None:
        await schedule_expiry(uow=uow, order_id=event.id, expires_at=event.expires_at)

    async def handle_batch(self, deliveries: Sequence[tuple[OrderCreated, EventContext]], uow: UnitOfWork) -> None:
        # Every order created goes through here: claim them all in one statement instead of one each.
        await schedule_expiries(uow=uow, orders=[(event.id, event.expires_at) for event, _ in deliveries])


class OrderCancelledListener(Listener[OrderCancelled]):
    """Remove the order's pending schedule so it never fires."""

    event = OrderCancelled

    def __init__(self, *, jetstream: JetStreamProvider, stream: str) -> None:
        self._jetstream = jetstream
        self._stream = stream

    async def handle(self, event: OrderCancelled, uow: UnitOfWork, context: EventContext) -> None:
        await cancel_expiry(uow=uow, order_id=event.id, remove_schedule=self._remove)

    async def _remove(self, order_id: uuid.UUID) -> None:
        js = self._jetstream()
        if js is None:
            raise ConnectionError("not connected to NATS")  # retried: the runner naks and redelivers
        await remove_schedule(js, stream=self._stream, order_id=order_id)


def listeners(settings: Settings, *, jetstream: JetStreamProvider) -> Sequence[Listener[Any]]:
    return [
        OrderCreatedListener(),
        OrderCancelledListener(jetstream=jetstream, stream=settings.nats_stream),
    ]
