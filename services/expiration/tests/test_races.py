"""``order.created`` and ``order.cancelled`` of one order handled at the same moment, in two transactions (two
replicas, or two listeners of one): whichever commits first, the other sees it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.js import JetStreamContext

from ticketing_common.config import ServiceSettings
from ticketing_common.db import Database
from ticketing_common.events import NotYet
from ticketing_common.testing import wait_until
from ticketing_expiration.service import cancel_expiry, schedule_expiries, schedule_expiry


def in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


async def waiting_for_a_lock(db: Database) -> bool:
    waiting: int = await db.pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return waiting > 0


async def test_a_cancellation_that_waited_for_a_concurrent_order_created_holds_until_its_schedule_is_sent(
    db: Database, js: JetStreamContext, settings: ServiceSettings, find_expiry: Any
) -> None:
    order_id = uuid.uuid4()

    async def cancel() -> bool:
        async with db.unit_of_work() as uow:
            return await cancel_expiry(uow=uow, order_id=order_id, js=js, stream=settings.nats_stream)

    async with db.unit_of_work() as uow:
        assert await schedule_expiry(uow=uow, order_id=order_id, expires_at=in_an_hour())
        cancelling = asyncio.create_task(cancel())
        await wait_until(lambda: waiting_for_a_lock(db))  # on the order's row, until this commits

    # It sees the schedule committed meanwhile, still unsent: a publisher may be sending it, so no purge yet.
    with pytest.raises(NotYet):
        await cancelling
    expiry = await find_expiry(db.pool, order_id)
    assert expiry is not None
    assert expiry.cancelled_at is None
    assert await db.pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", expiry.schedule_event_id) == 1


async def test_order_created_that_waited_for_a_concurrent_cancellation_schedules_nothing(
    db: Database, js: JetStreamContext, settings: ServiceSettings
) -> None:
    contended, free = uuid.uuid4(), uuid.uuid4()

    async def schedule() -> list[uuid.UUID]:
        async with db.unit_of_work() as uow:
            return await schedule_expiries(uow=uow, orders=[(contended, in_an_hour()), (free, in_an_hour())])

    async with db.unit_of_work() as uow:
        assert not await cancel_expiry(uow=uow, order_id=contended, js=js, stream=settings.nats_stream)  # a tombstone
        scheduling = asyncio.create_task(schedule())
        await wait_until(lambda: waiting_for_a_lock(db))

    assert await scheduling == [free]
    outbox = await db.pool.fetch("SELECT subject FROM outbox")
    assert [row["subject"] for row in outbox] == [f"expiration.orders.{free}"]
