"""The expiration service's own table, as its migrations leave it."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from fastapi import FastAPI

from ticketing_common.db import new_id, utcnow, violated_constraint
from ticketing_expiration.queries import claim_expiry, find_expiry


async def test_order_expiries_is_indexed_by_its_primary_key_alone(app: FastAPI) -> None:
    # The service reads order_expiries by order id only; the partial index of pending expiries (0004), which only
    # the in-process timers' re-arm read, is dropped by 0005.
    indexes = await app.state.db.pool.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'order_expiries'")
    assert [row["indexname"] for row in indexes] == ["pk_order_expiries"]


async def test_order_expiries_has_the_columns_the_queries_read(app: FastAPI) -> None:
    columns = await app.state.db.pool.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_name = 'order_expiries' ORDER BY ordinal_position"
    )
    assert [tuple(row) for row in columns] == [
        ("order_id", "uuid", "NO"),
        ("expires_at", "timestamp with time zone", "YES"),
        ("schedule_event_id", "uuid", "YES"),
        ("cancelled_at", "timestamp with time zone", "YES"),
        ("recorded_at", "timestamp with time zone", "NO"),
    ]
    order_id = uuid.uuid4()
    assert await claim_expiry(app.state.db.pool, order_id=order_id, expires_at=utcnow(), schedule_event_id=new_id())
    row = await find_expiry(app.state.db.pool, order_id)
    assert row is not None
    assert row.recorded_at is not None  # defaulted by the database


async def test_an_order_has_one_expiry_row_and_each_row_is_a_schedule_or_a_cancellation(app: FastAPI) -> None:
    order_id = uuid.uuid4()
    insert = "INSERT INTO order_expiries (order_id, expires_at, cancelled_at) VALUES ($1, $2, $3)"
    await app.state.db.pool.execute(insert, order_id, utcnow(), None)
    with pytest.raises(asyncpg.UniqueViolationError) as taken:
        await app.state.db.pool.execute(insert, order_id, utcnow(), None)
    assert violated_constraint(taken.value) == "pk_order_expiries"
    with pytest.raises(asyncpg.CheckViolationError) as neither:
        await app.state.db.pool.execute(insert, uuid.uuid4(), None, None)
    assert violated_constraint(neither.value) == "ck_order_expiries_scheduled_or_cancelled"
