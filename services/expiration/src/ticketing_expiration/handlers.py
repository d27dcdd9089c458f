"""Entry points of the expiration service: ``order.created`` schedules (and arms a timer), ``order.cancelled``
unschedules, and a timer that comes due expires its order."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from ticketing_common.events import EventContext, Listener, OrderCancelled, OrderCreated
from ticketing_expiration.config import Settings
from ticketing_expiration.schedules import publish_expired, remove_schedule
from ticketing_expiration.service import cancel_expiry, expire_orders, pending_expiries, schedule_expiry
from ticketing_expiration.timers import ExpiryTimers, Fire

JetStreamProvider = Callable[[], JetStreamContext | None]
"""The running app's JetStream connection (None until it is connected)."""


class OrderCreatedListener(Listener[OrderCreated]):
    """Write the order's schedule message (through the outbox) that fires ``order.expired``, and once that is
    committed arm this process's timer for ``expiresAt`` when it is near enough."""

    event = OrderCreated

    def __init__(self, *, timers: ExpiryTimers | None = None) -> None:
        self._timers = timers

    async def handle(self, event: OrderCreated, session: AsyncSession, context: EventContext) -> None:
        timers = self._timers if self._timers is not None and self._timers.accepts(event.expires_at) else None
        scheduled = await schedule_expiry(
            session=session,
            order_id=event.id,
            expires_at=event.expires_at,
            fire_at=timers.schedule_time(event.expires_at) if timers is not None else None,
        )
        if scheduled and timers is not None:
            after_commit(session, partial(timers.arm, event.id, event.expires_at))


class OrderCancelledListener(Listener[OrderCancelled]):
    """Remove the order's pending schedule (and this process's timer) so it never fires."""

    event = OrderCancelled

    def __init__(self, *, jetstream: JetStreamProvider, stream: str, timers: ExpiryTimers | None = None) -> None:
        self._jetstream = jetstream
        self._stream = stream
        self._timers = timers

    async def handle(self, event: OrderCancelled, session: AsyncSession, context: EventContext) -> None:
        if self._timers is not None:
            # Before the commit: should it fail, the order is cancelled all the same and must not expire by timer.
            self._timers.cancel(event.id)
        await cancel_expiry(session=session, order_id=event.id, remove_schedule=self._remove)

    async def _remove(self, order_id: uuid.UUID) -> None:
        js = self._jetstream()
        if js is None:
            raise ConnectionError("not connected to NATS")  # retried: the runner naks and redelivers
        await remove_schedule(js, stream=self._stream, order_id=order_id)


def expire_on_timer(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    jetstream: JetStreamProvider,
    stream: str,
    service: str,
) -> Fire:
    """What a batch of timers does when due: expire the orders that are still pending."""

    async def fire(order_ids: Sequence[uuid.UUID]) -> None:
        js = jetstream()
        if js is None:
            return  # the schedules fire instead

        async def publish(expiries: Mapping[uuid.UUID, datetime]) -> set[uuid.UUID]:
            return await publish_expired(js, stream=stream, source=service, expiries=expiries)

        async def remove(order_id: uuid.UUID) -> None:
            await remove_schedule(js, stream=stream, order_id=order_id)

        async with sessionmaker() as session, session.begin():
            session.info["service"] = service
            await expire_orders(session=session, order_ids=order_ids, publish_expired=publish, remove_schedule=remove)

    return fire


def after_commit(session: AsyncSession, callback: Callable[[], object]) -> None:
    """Call ``callback`` once ``session``'s transaction has committed (never if it rolls back)."""

    def committed(_: Session) -> None:
        callback()

    orm_event.listen(session.sync_session, "after_commit", committed, once=True)


def create_timers(
    settings: Settings, *, sessionmaker: async_sessionmaker[AsyncSession], jetstream: JetStreamProvider
) -> ExpiryTimers | None:
    """This process's expiry timers, or None when ``EXPIRY_TIMER_MAX_ARMED`` is 0 (schedules alone).

    ``jetstream`` must answer None while disconnected: nats-py would buffer a publish and send it on reconnection,
    when the schedule fires too.
    """
    if settings.expiry_timer_max_armed <= 0:
        return None
    fire = expire_on_timer(
        sessionmaker=sessionmaker, jetstream=jetstream, stream=settings.nats_stream, service=settings.service_name
    )
    return ExpiryTimers(
        fire,
        horizon_seconds=settings.expiry_timer_horizon_seconds,
        max_armed=settings.expiry_timer_max_armed,
        grace_seconds=settings.expiry_timer_grace_seconds,
    )


async def rearm_timers(timers: ExpiryTimers, *, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Arm this process's timers for the pending expiries within their horizon, as many as it may hold (after a
    restart or a deploy, which would otherwise leave them to their schedules, half a second late); returns how many
    it armed.

    Every replica that starts does this: for an order armed twice, the first timer to fire takes the order's row
    lock and the other finds it fired.
    """
    async with sessionmaker() as session:
        pending = await pending_expiries(session=session, within_seconds=timers.horizon_seconds, limit=timers.free)
    return sum(timers.arm(order_id, expires_at) for order_id, expires_at in pending)


def listeners(
    settings: Settings, *, jetstream: JetStreamProvider, timers: ExpiryTimers | None = None
) -> Sequence[Listener[Any]]:
    return [
        OrderCreatedListener(timers=timers),
        OrderCancelledListener(jetstream=jetstream, stream=settings.nats_stream, timers=timers),
    ]
