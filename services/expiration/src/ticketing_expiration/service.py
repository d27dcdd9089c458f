"""Use cases of the expiration service, run inside the transaction a listener opened.

The listener runner opens that transaction and claims the event in the inbox in it, so a redelivered event
never gets here twice. These functions are additionally idempotent per order (an ``order.created`` published
twice under two event ids schedules once) and tolerate ``order.cancelled`` arriving before ``order.created``.
Races between replicas are settled by the primary key of ``order_expiries``: a second writer of the same
order waits for the first one's transaction and then sees its row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import bindparam, delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common.events import publish
from ticketing_common.events.tables import OutboxRow
from ticketing_expiration.models import OrderExpiry
from ticketing_expiration.schedules import as_utc, expired_event, schedule_headers, schedule_subject

logger = logging.getLogger("ticketing.expiration")

# Built once: on the event path, building the statement would cost more CPU than running it. On the table, not
# the entity, like the listener's inbox claim: it skips the ORM's bulk-DML path.
_expiries = OrderExpiry.__table__
CLAIM_EXPIRY = (
    pg_insert(_expiries)
    .values(
        order_id=bindparam("order_id"),
        expires_at=bindparam("expires_at"),
        schedule_event_id=bindparam("schedule_event_id"),
    )
    .on_conflict_do_nothing(index_elements=[_expiries.c.order_id])
    .returning(_expiries.c.order_id)
)

RemoveSchedule = Callable[[uuid.UUID], Awaitable[None]]
"""Deletes an order's schedule message from JetStream."""


async def schedule_expiry(*, session: AsyncSession, order_id: uuid.UUID, expires_at: datetime) -> bool:
    """Stage the schedule that fires ``order.expired`` at ``expires_at`` (at once if that has passed).

    Returns False, scheduling nothing, when the order is already known: scheduled before, or cancelled.
    """
    expires_at = as_utc(expires_at)
    event_id = uuid.uuid4()  # the schedule message's, known before it is staged: one write claims and records it
    claimed = await session.scalar(
        CLAIM_EXPIRY, {"order_id": order_id, "expires_at": expires_at, "schedule_event_id": event_id}
    )
    if claimed is None:
        logger.info("expiry already decided", extra={"order_id": str(order_id)})
        return False
    publish(
        session,
        expired_event(order_id),
        subject=schedule_subject(order_id),
        headers=schedule_headers(order_id, expires_at, source=event_source(session)),
        event_id=event_id,
    )
    logger.debug("expiry scheduled", extra={"order_id": str(order_id), "expires_at": expires_at.isoformat()})
    return True


async def cancel_expiry(*, session: AsyncSession, order_id: uuid.UUID, remove_schedule: RemoveSchedule) -> bool:
    """Drop the order's pending expiry; returns whether one had been scheduled.

    A schedule still waiting in the outbox is deleted there; ``DELETE`` waits for a relay that is sending
    it at this very moment and then finds it sent, so either the row is gone before it was ever published
    or it is in the stream and the purge that follows removes it. An order not seen yet gets a tombstone.
    """
    schedule_event_id = await session.scalar(
        pg_insert(OrderExpiry)
        .values(order_id=order_id, cancelled_at=func.now())
        .on_conflict_do_update(
            index_elements=[OrderExpiry.order_id],
            set_={"cancelled_at": func.coalesce(OrderExpiry.cancelled_at, func.now())},
        )
        .returning(OrderExpiry.schedule_event_id)
    )
    if schedule_event_id is None:
        return False
    await session.execute(delete(OutboxRow).where(OutboxRow.event_id == schedule_event_id, OutboxRow.sent_at.is_(None)))
    # Also when the row was unsent: a relay may have published it and died before marking it sent.
    await remove_schedule(order_id)
    logger.info("expiry cancelled", extra={"order_id": str(order_id)})
    return True


def event_source(session: AsyncSession) -> str:
    """The ``ce-source`` of the events published in ``session`` (the service's name, as the outbox sets it)."""
    return str(session.info.get("service", "unknown"))
