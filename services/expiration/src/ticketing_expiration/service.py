"""Use cases of the expiration service, run in the unit of work a listener was given.

The listener runner opens that unit of work and claims the events in the inbox in it, so a redelivered event
never gets here twice. These functions are additionally idempotent per order (an ``order.created`` published
twice under two event ids schedules once) and tolerate ``order.cancelled`` arriving before ``order.created``.
Races between replicas are settled by the primary key of ``order_expiries``: a second writer of the same
order waits for the first one's transaction and then sees its row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from nats.js import JetStreamContext

from ticketing_common.db import UnitOfWork, new_id
from ticketing_common.events import NotYet
from ticketing_common.events.outbox import PUBLISH_TIMEOUT_SECONDS
from ticketing_expiration import queries
from ticketing_expiration.schedules import (
    as_utc,
    expired_event,
    remove_schedule,
    schedule_headers,
    schedule_subject,
)

logger = logging.getLogger("ticketing.expiration")

# How long after its commit a publisher may still be sending an event from memory: one publish batch ahead of it
# and its own, each given up after PUBLISH_TIMEOUT_SECONDS. Older and unsent, the sweeper alone can send it.
PUBLISHING_SECONDS = 2 * PUBLISH_TIMEOUT_SECONDS


async def schedule_expiry(*, uow: UnitOfWork, order_id: uuid.UUID, expires_at: datetime) -> bool:
    """Stage the schedule that fires ``order.expired`` at ``expires_at`` (at once if that has passed).

    Returns False, scheduling nothing, when the order is already known: scheduled before, or cancelled.
    """
    expires_at = as_utc(expires_at)
    event_id = new_id()  # the schedule message's, known before it is staged: one write claims and records it
    if not await queries.claim_expiry(uow.conn, order_id=order_id, expires_at=expires_at, schedule_event_id=event_id):
        logger.info("expiry already decided", extra={"order_id": str(order_id)})
        return False
    _stage_schedule(uow, order_id, expires_at, event_id)
    return True


async def schedule_expiries(*, uow: UnitOfWork, orders: Sequence[tuple[uuid.UUID, datetime]]) -> list[uuid.UUID]:
    """:func:`schedule_expiry` for many ``(order_id, expires_at)`` in one statement, with the same outcome as
    one by one in this order (the first copy of an order decides); returns the orders scheduled, in order."""
    first = {order_id: (expires_at, new_id()) for order_id, expires_at in first_copies(orders).items()}
    claimed = await queries.claim_expiries(
        uow.conn, [(order_id, expires_at, event_id) for order_id, (expires_at, event_id) in first.items()]
    )
    scheduled = [order_id for order_id in first if order_id in claimed]
    for order_id in scheduled:
        expires_at, event_id = first[order_id]
        _stage_schedule(uow, order_id, expires_at, event_id)
    if len(scheduled) < len(orders):
        logger.info("expiries already decided", extra={"count": len(orders) - len(scheduled)})
    return scheduled


def first_copies(orders: Sequence[tuple[uuid.UUID, datetime]]) -> dict[uuid.UUID, datetime]:
    """Each order once, with the expiry of its first copy (in UTC), in the order first seen: what handling the
    copies one by one would decide, since the first claims the order and the later ones find it known."""
    first: dict[uuid.UUID, datetime] = {}
    for order_id, expires_at in orders:
        first.setdefault(order_id, as_utc(expires_at))
    return first


def _stage_schedule(uow: UnitOfWork, order_id: uuid.UUID, expires_at: datetime, event_id: uuid.UUID) -> None:
    uow.publish(
        expired_event(order_id),
        subject=schedule_subject(order_id),
        headers=schedule_headers(order_id, expires_at, source=uow.source),
        event_id=event_id,
    )
    logger.debug("expiry scheduled", extra={"order_id": str(order_id), "expires_at": expires_at.isoformat()})


async def cancel_expiry(*, uow: UnitOfWork, order_id: uuid.UUID, js: JetStreamContext, stream: str) -> bool:
    """Drop the order's pending expiry; returns whether one had been scheduled.

    A schedule still waiting in the outbox is deleted there; one in ``stream`` is purged (also when the row was
    unsent: a publisher may have sent it and stopped before marking it). An order not seen yet gets a tombstone.
    Raises :class:`NotYet` while a publisher may be sending the schedule from memory: a purge now could come
    before the schedule reaches the stream, so the cancellation is redelivered once it was sent or given up.
    """
    schedule_event_id = await queries.cancel_expiry(uow.conn, order_id)
    if schedule_event_id is None:
        return False
    if await queries.drop_unsent_schedule(uow.conn, schedule_event_id, publishing_seconds=PUBLISHING_SECONDS):
        raise NotYet(f"the schedule of order {order_id} may be being published")
    await remove_schedule(js, stream=stream, order_id=order_id)
    logger.info("expiry cancelled", extra={"order_id": str(order_id)})
    return True
