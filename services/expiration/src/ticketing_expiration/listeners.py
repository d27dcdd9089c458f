"""Event listeners of the expiration service: ``order.created`` schedules an expiry, ``order.cancelled`` removes it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.db import UnitOfWork
from ticketing_common.events import Listener, OrderCancelled, OrderCreated
from ticketing_expiration.config import Settings
from ticketing_expiration.service import cancel_expiry, schedule_expiries, schedule_expiry


class OrderCreatedListener(Listener[OrderCreated]):
    """Write the order's schedule message (through the outbox) that fires ``order.expired`` at ``expiresAt``."""

    event = OrderCreated

    async def handle(self, event: OrderCreated, uow: UnitOfWork) -> None:
        await schedule_expiry(uow=uow, order_id=event.id, expires_at=event.expires_at)

    async def handle_batch(self, events: Sequence[OrderCreated], uow: UnitOfWork) -> None:
        # Every order created goes through here: claim them all in one statement instead of one each.
        await schedule_expiries(uow=uow, orders=[(event.id, event.expires_at) for event in events])


class OrderCancelledListener(Listener[OrderCancelled]):
    """Remove the order's pending schedule so it never fires."""

    event = OrderCancelled

    def __init__(self, js: JetStreamContext, *, stream: str) -> None:
        self.js = js
        self.stream = stream

    async def handle(self, event: OrderCancelled, uow: UnitOfWork) -> None:
        await cancel_expiry(uow=uow, order_id=event.id, js=self.js, stream=self.stream)


def listeners(app: FastAPI) -> Sequence[Listener[Any]]:
    settings: Settings = app.state.settings
    js: JetStreamContext = app.state.events.js  # connected: listeners are built once NATS is
    return [
        OrderCreatedListener(),
        OrderCancelledListener(js, stream=settings.nats_stream),
    ]
