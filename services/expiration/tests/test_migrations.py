"""The one migration creates the schema the service's statements rely on (the messaging tables and
``order_expiries``, keyed by order, with its check), the database enforces it, and it downgrades cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic import command
from alembic.config import Config

from ticketing_common.config import ServiceSettings, server_url_for_database
from ticketing_common.db import asyncpg_dsn, migrate, utcnow, violated_constraint
from ticketing_expiration.main import MIGRATIONS_DIR

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
    "pk_order_expiries": "PRIMARY KEY (order_id)",
    "ck_order_expiries_scheduled_or_cancelled": "CHECK (((expires_at IS NOT NULL) OR (cancelled_at IS NOT NULL)))",
}

INSERT = "INSERT INTO order_expiries (order_id, expires_at, cancelled_at) VALUES ($1, $2, $3)"


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@pytest.fixture
async def migrated(settings: ServiceSettings) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A database of its own, migrated to head and emptied, and a connection to it."""
    url = server_url_for_database(settings.database_url, "ticketing_expiration_migrations_test")
    await asyncio.to_thread(migrate, url, MIGRATIONS_DIR)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("TRUNCATE order_expiries")
        yield url, conn
    finally:
        await conn.close()


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows} - {"alembic_version"}


async def _columns(conn: asyncpg.Connection) -> list[tuple[str, str, bool, str | None]]:
    rows = await conn.fetch(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable,"
        " pg_get_expr(d.adbin, d.adrelid) AS default"
        " FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = 'order_expiries'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    )
    return [tuple(row) for row in rows]


async def _constraints(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
        " WHERE conrelid = 'order_expiries'::regclass AND contype <> 'n'"  # NOT NULL: in the columns
    )
    return {row["conname"]: row["definition"] for row in rows}


async def _violation(conn: asyncpg.Connection, *args: object) -> str | None:
    try:
        await conn.execute(INSERT, *args)
    except asyncpg.IntegrityConstraintViolationError as exc:
        return violated_constraint(exc)
    return None


async def test_the_migration_creates_the_messaging_tables_and_order_expiries_and_nothing_else(migrated) -> None:
    _, conn = migrated
    assert await _tables(conn) == TABLES
    assert await conn.fetchval("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 0


async def test_order_expiries_has_the_columns_and_constraints_the_statements_rely_on(migrated) -> None:
    _, conn = migrated
    assert await _columns(conn) == ORDER_EXPIRIES_COLUMNS
    assert await _constraints(conn) == ORDER_EXPIRIES_CONSTRAINTS


async def test_order_expiries_is_indexed_by_its_primary_key_alone(migrated) -> None:
    # Every statement finds an order's row by its id; nothing scans the table.
    _, conn = migrated
    indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'order_expiries'")
    assert [row["indexname"] for row in indexes] == ["pk_order_expiries"]


async def test_the_database_records_when_it_heard_of_an_order(migrated) -> None:
    _, conn = migrated
    before = await conn.fetchval("SELECT now()")
    recorded_at = await conn.fetchval(f"{INSERT} RETURNING recorded_at", uuid.uuid4(), utcnow(), None)
    assert recorded_at >= before


async def test_an_order_has_one_expiry_row_and_each_row_is_a_schedule_or_a_cancellation(migrated) -> None:
    _, conn = migrated
    order_id = uuid.uuid4()
    assert await _violation(conn, order_id, utcnow(), None) is None  # a schedule
    assert await _violation(conn, uuid.uuid4(), None, utcnow()) is None  # a tombstone
    assert await _violation(conn, order_id, utcnow(), None) == "pk_order_expiries"
    assert await _violation(conn, uuid.uuid4(), None, None) == "ck_order_expiries_scheduled_or_cancelled"


async def test_downgrade_removes_every_table_and_upgrade_brings_back_the_same_schema(migrated) -> None:
    url, conn = migrated
    await asyncio.to_thread(command.downgrade, _alembic(url), "base")
    assert await _tables(conn) == set()
    await asyncio.to_thread(command.upgrade, _alembic(url), "head")
    assert await _tables(conn) == TABLES
    assert await _columns(conn) == ORDER_EXPIRIES_COLUMNS
    assert await _constraints(conn) == ORDER_EXPIRIES_CONSTRAINTS
