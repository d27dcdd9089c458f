"""Use cases of the expiration service, run inside the transaction a listener (or the timers) opened.

The listener runner opens that transaction and claims the event in the inbox in it, so a redelivered event
never gets here twice. These functions are additionally idempotent per order (an ``order.created`` published
twice under two event ids schedules once) and tolerate ``order.cancelled`` arriving before ``order.created``.
Races between replicas are settled by the primary key of ``order_expiries``: a second writer of the same
order waits for the first one's transaction and then sees its row.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Select, bindparam, delete, func, select, update
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

PublishExpired = Callable[[Mapping[uuid.UUID, datetime]], Awaitable[set[uuid.UUID]]]
"""Publishes ``order.expired`` for these orders (order id -> ``expiresAt``); returns those stored."""


async def schedule_expiry(
    *, session: AsyncSession, order_id: uuid.UUID, expires_at: datetime, fire_at: datetime | None = None
) -> bool:
    """Stage the schedule that fires ``order.expired`` at ``fire_at``, by default ``expires_at`` (at once if that
    has passed); the event's ``ce-time`` is ``expires_at`` either way.

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
        headers=schedule_headers(order_id, expires_at, source=event_source(session), fire_at=fire_at),
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


async def expire_orders(
    *,
    session: AsyncSession,
    order_ids: Sequence[uuid.UUID],
    publish_expired: PublishExpired,
    remove_schedule: RemoveSchedule,
) -> set[uuid.UUID]:
    """Publish ``order.expired`` now for those of these orders whose expiry is still pending, and remove their
    schedules; returns the orders published.

    The rows are locked first, so a cancellation committed by any replica is seen, and one in progress waits for
    this transaction (the order then expired first). A schedule still unsent in the outbox is deleted like
    ``cancel_expiry`` does, or the relay would send it after the purge. An order whose publish failed keeps its
    schedule, the durable backstop; a purge that fails leaves a second copy with the same ``ce-id``, which
    consumers' inboxes drop.
    """
    rows = (
        await session.execute(
            select(OrderExpiry.order_id, OrderExpiry.expires_at, OrderExpiry.schedule_event_id)
            .where(
                OrderExpiry.order_id.in_(order_ids),
                OrderExpiry.cancelled_at.is_(None),
                OrderExpiry.expires_at.is_not(None),
                # Cleared once a timer fired it: a second timer (another replica re-arming after a restart) waits
                # for the first one's lock, then finds nothing left to do.
                OrderExpiry.schedule_event_id.is_not(None),
            )
            .with_for_update()
        )
    ).all()
    pending = {row.order_id: row.expires_at for row in rows if row.expires_at is not None}
    if not pending:
        return set()
    published = await publish_expired(pending)
    schedules = [row.schedule_event_id for row in rows if row.order_id in published]
    if schedules:
        await session.execute(delete(OutboxRow).where(OutboxRow.event_id.in_(schedules), OutboxRow.sent_at.is_(None)))
    expired = sorted(published)
    purges = await asyncio.gather(*(remove_schedule(order_id) for order_id in expired), return_exceptions=True)
    purged = [order_id for order_id, result in zip(expired, purges, strict=True) if result is None]
    if failed := len(published) - len(purged):
        logger.warning("schedules not purged after expiry", extra={"orders": failed})
    if purged:
        # No schedule is left: the order.cancelled that follows each expiry then has nothing to purge again.
        await session.execute(
            update(OrderExpiry).where(OrderExpiry.order_id.in_(purged)).values(schedule_event_id=None)
        )
    logger.debug(
        "orders expired by timer", extra={"orders": len(published), "skipped": len(order_ids) - len(published)}
    )
    return published


def pending_expiries_query(*, within_seconds: float, limit: int) -> Select[uuid.UUID, datetime | None]:
    """The query behind :func:`pending_expiries` (it reads the partial index ``ix_order_expiries_pending``)."""
    return (
        select(OrderExpiry.order_id, OrderExpiry.expires_at)
        .where(
            OrderExpiry.cancelled_at.is_(None),
            OrderExpiry.schedule_event_id.is_not(None),
            OrderExpiry.expires_at > func.now(),
            OrderExpiry.expires_at <= func.now() + timedelta(seconds=within_seconds),
        )
        .order_by(OrderExpiry.expires_at)
        .limit(limit)
    )


async def pending_expiries(
    *, session: AsyncSession, within_seconds: float, limit: int
) -> Sequence[tuple[uuid.UUID, datetime]]:
    """The expiries still to fire in the next ``within_seconds`` (not cancelled, not fired by a timer), soonest
    first, at most ``limit``: what a starting replica arms timers for."""
    rows = await session.execute(pending_expiries_query(within_seconds=within_seconds, limit=limit))
    return [(order_id, expires_at) for order_id, expires_at in rows.all() if expires_at is not None]


def event_source(session: AsyncSession) -> str:
    """The ``ce-source`` of the events published in ``session`` (the service's name, as the outbox sets it)."""
    return str(session.info.get("service", "unknown"))
