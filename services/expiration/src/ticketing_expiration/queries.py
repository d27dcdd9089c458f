"""Every SQL statement of the expiration service.

``order_expiries`` is keyed by the order, so every decision is one statement settled by that primary key: the
first ``order.created`` of an order claims it (``ON CONFLICT DO NOTHING``), a cancellation marks it (or leaves
a tombstone); then its schedule is deleted from the outbox if no publisher can still be sending it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from ticketing_common.db import Executor

CLAIM_EXPIRY = """
INSERT INTO order_expiries (order_id, expires_at, schedule_event_id) VALUES ($1, $2, $3)
ON CONFLICT (order_id) DO NOTHING
RETURNING order_id
"""

# The orders must be distinct: the caller keeps the first copy of each, as one-by-one handling would.
CLAIM_EXPIRIES = """
INSERT INTO order_expiries (order_id, expires_at, schedule_event_id)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[])
ON CONFLICT (order_id) DO NOTHING
RETURNING order_id
"""

# Mark the order cancelled, or leave a tombstone; the outbox id of its schedule if it had one. A concurrent
# order.created of the same order is waited for, and then its row is the one updated.
CANCEL_EXPIRY = """
INSERT INTO order_expiries (order_id, cancelled_at) VALUES ($1, now())
ON CONFLICT (order_id) DO UPDATE SET cancelled_at = coalesce(order_expiries.cancelled_at, now())
RETURNING schedule_event_id
"""

# A statement of its own, not a CTE of CANCEL_EXPIRY: that statement's snapshot may predate the commit of the
# order.created it waited for, and would not see its outbox row. Deletes the schedule while unsent and older than
# $2 seconds; the DELETE waits for a sweeper that holds the row (it is sending it) and then finds it sent, so
# either the schedule never reaches NATS or it is there for the purge that follows. A younger unsent row is only
# reported: a publisher may be sending it from memory right now, without any lock to wait for.
DROP_UNSENT_SCHEDULE = """
WITH dropped AS (
    DELETE FROM outbox
    WHERE event_id = $1 AND sent_at IS NULL AND created_at < now() - make_interval(secs => $2)
)
SELECT EXISTS (
    SELECT FROM outbox WHERE event_id = $1 AND sent_at IS NULL AND created_at >= now() - make_interval(secs => $2)
)
"""


async def claim_expiry(
    db: Executor, *, order_id: uuid.UUID, expires_at: datetime, schedule_event_id: uuid.UUID
) -> bool:
    """Record the order's schedule; False, recording nothing, when the order is already known."""
    return await db.fetchval(CLAIM_EXPIRY, order_id, expires_at, schedule_event_id) is not None


async def claim_expiries(db: Executor, expiries: Sequence[tuple[uuid.UUID, datetime, uuid.UUID]]) -> set[uuid.UUID]:
    """Record the schedules of distinct orders ``(order_id, expires_at, schedule_event_id)`` in one statement;
    returns the orders that were not known yet."""
    rows = await db.fetch(
        CLAIM_EXPIRIES,
        [order_id for order_id, _, _ in expiries],
        [expires_at for _, expires_at, _ in expiries],
        [event_id for _, _, event_id in expiries],
    )
    return {row["order_id"] for row in rows}


async def cancel_expiry(db: Executor, order_id: uuid.UUID) -> uuid.UUID | None:
    """Mark the order's expiry cancelled (a tombstone if it was never scheduled); its schedule's outbox id."""
    schedule_event_id: uuid.UUID | None = await db.fetchval(CANCEL_EXPIRY, order_id)
    return schedule_event_id


async def drop_unsent_schedule(db: Executor, schedule_event_id: uuid.UUID, *, publishing_seconds: float) -> bool:
    """Delete the schedule from the outbox if it is unsent and no publisher can still be sending it; returns
    True, deleting nothing, when one may be (unsent and younger than ``publishing_seconds``)."""
    publishing: bool = await db.fetchval(DROP_UNSENT_SCHEDULE, schedule_event_id, publishing_seconds)
    return publishing
