"""The one migration creates the schema the service's statements rely on (the messaging tables and
``order_expiries``, keyed by order, with its check), the database enforces it, and it downgrades cleanly."""

from __future__ import annotations

import uuid

from ticketing_common.db import utcnow
from ticketing_common.testing import ALEMBIC_TABLE, MigratedDatabase

TABLES = {"order_expiries", "outbox", "processed_events", "parked_messages"}

# (column, type, nullable, default) in table order.
ORDER_EXPIRIES_COLUMNS = [
    ("order_id", "uuid", False, None),
    ("expires_at", "timestamp with time zone", True, None),
    ("schedule_event_id", "uuid", True, None),
    ("cancelled_at", "timestamp with time zone", True, None),
    ("recorded_at", "timestamp with time zone", False, "now()"),
]
ORDER_EXPIRIES_CONSTRAINTS = {
    ("order_expiries", "pk_order_expiries"): "PRIMARY KEY (order_id)",
    ("order_expiries", "ck_order_expiries_scheduled_or_cancelled"): (
        "CHECK (((expires_at IS NOT NULL) OR (cancelled_at IS NOT NULL)))"
    ),
}

INSERT = "INSERT INTO order_expiries (order_id, expires_at, cancelled_at) VALUES ($1, $2, $3)"


async def test_the_migration_creates_the_messaging_tables_and_order_expiries_and_nothing_else(
    migrated_db: MigratedDatabase,
) -> None:
    conn = migrated_db.conn
    assert await migrated_db.tables() == TABLES | {ALEMBIC_TABLE}
    assert await conn.fetchval("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 0


async def test_order_expiries_has_the_columns_and_constraints_the_statements_rely_on(
    migrated_db: MigratedDatabase,
) -> None:
    schema = await migrated_db.schema(["order_expiries"])
    assert schema.columns["order_expiries"] == ORDER_EXPIRIES_COLUMNS
    assert schema.constraints == ORDER_EXPIRIES_CONSTRAINTS


async def test_order_expiries_is_indexed_by_its_primary_key_alone(migrated_db: MigratedDatabase) -> None:
    # Every statement finds an order's row by its id; nothing scans the table.
    conn = migrated_db.conn
    indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'order_expiries'")
    assert [row["indexname"] for row in indexes] == ["pk_order_expiries"]


async def test_the_database_records_when_it_heard_of_an_order(migrated_db: MigratedDatabase) -> None:
    conn = migrated_db.conn
    before = await conn.fetchval("SELECT now()")
    recorded_at = await conn.fetchval(f"{INSERT} RETURNING recorded_at", uuid.uuid4(), utcnow(), None)
    assert recorded_at >= before


async def test_an_order_has_one_expiry_row_and_each_row_is_a_schedule_or_a_cancellation(
    migrated_db: MigratedDatabase,
) -> None:
    order_id = uuid.uuid4()
    assert await migrated_db.violation(INSERT, order_id, utcnow(), None) is None  # a schedule
    assert await migrated_db.violation(INSERT, uuid.uuid4(), None, utcnow()) is None  # a tombstone
    assert await migrated_db.violation(INSERT, order_id, utcnow(), None) == "pk_order_expiries"
    assert await migrated_db.violation(INSERT, uuid.uuid4(), None, None) == "ck_order_expiries_scheduled_or_cancelled"


async def test_downgrade_removes_every_table_and_upgrade_brings_back_the_same_schema(
    migrated_db: MigratedDatabase,
) -> None:
    await migrated_db.assert_round_trip()
    assert await migrated_db.tables() == TABLES | {ALEMBIC_TABLE}
    schema = await migrated_db.schema(["order_expiries"])
    assert schema.columns["order_expiries"] == ORDER_EXPIRIES_COLUMNS
    assert schema.constraints == ORDER_EXPIRIES_CONSTRAINTS
