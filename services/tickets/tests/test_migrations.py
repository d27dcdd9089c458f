"""The one migration builds the schema the queries rely on, its rules hold, and it downgrades and upgrades cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config

from ticketing_common.config import server_url_for_database
from ticketing_common.db import asyncpg_dsn, migrate, violated_constraint
from ticketing_tickets.main import MIGRATIONS_DIR

TABLES = {"tickets", "cancelled_orders", "outbox", "processed_events", "parked_messages"}
TICKET_COLUMNS = {
    "id": ("uuid", "NO"),
    "title": ("character varying", "NO"),
    "price": ("numeric", "NO"),
    "user_id": ("uuid", "NO"),
    "order_id": ("uuid", "YES"),
    "version": ("integer", "NO"),
    "created_at": ("timestamp with time zone", "NO"),
    "updated_at": ("timestamp with time zone", "NO"),
}
CANCELLED_ORDER_COLUMNS = {
    "order_id": ("uuid", "NO"),
    "ticket_id": ("uuid", "NO"),
    "cancelled_at": ("timestamp with time zone", "NO"),
}
CONSTRAINTS = {
    ("tickets", "pk_tickets"),
    ("tickets", "ck_tickets_price_range"),
    ("tickets", "ck_tickets_version_not_negative"),
    ("tickets", "ck_tickets_title_length"),
    ("cancelled_orders", "pk_cancelled_orders"),
}


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@pytest.fixture
async def migrated(settings) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A database of its own, migrated to head, and a connection to it."""
    url = server_url_for_database(settings.database_url, "ticketing_tickets_migrations_test")
    await asyncio.to_thread(migrate, url, MIGRATIONS_DIR)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("TRUNCATE tickets, cancelled_orders")
        yield url, conn
    finally:
        await conn.close()


async def _columns(conn: asyncpg.Connection, table: str) -> dict[str, tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = $1", table
    )
    return {row["column_name"]: (row["data_type"], row["is_nullable"]) for row in rows}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows} - {"alembic_version"}


async def _schema(conn: asyncpg.Connection) -> dict[str, Any]:
    """Everything the migration creates, as the catalog has it."""
    queries = {
        "columns": "SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision,"
        " numeric_scale, is_nullable, column_default FROM information_schema.columns WHERE table_schema = 'public'",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
        "triggers": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
    }
    return {name: sorted(tuple(row) for row in await conn.fetch(query)) for name, query in queries.items()}


async def _violation(conn: asyncpg.Connection, statement: str, *args: object) -> str | None:
    try:
        await conn.execute(statement, *args)
    except asyncpg.IntegrityConstraintViolationError as exc:
        return violated_constraint(exc)
    return None


async def test_the_tables_have_the_columns_the_queries_use(migrated) -> None:
    _, conn = migrated
    assert await _tables(conn) == TABLES
    assert await _columns(conn, "tickets") == TICKET_COLUMNS
    assert await _columns(conn, "cancelled_orders") == CANCELLED_ORDER_COLUMNS
    precision = await conn.fetchrow(
        "SELECT numeric_precision, numeric_scale FROM information_schema.columns"
        " WHERE table_name = 'tickets' AND column_name = 'price'"
    )
    assert tuple(precision) == (9, 2)
    length = await conn.fetchval(
        "SELECT character_maximum_length FROM information_schema.columns"
        " WHERE table_name = 'tickets' AND column_name = 'title'"
    )
    assert length == 200


async def test_the_constraints_carry_the_names_the_service_reports(migrated) -> None:
    _, conn = migrated
    schema = await _schema(conn)
    assert {(table, name) for table, name, _ in schema["constraints"]} >= CONSTRAINTS


async def test_the_outbox_is_plain_no_trigger_and_no_attempts_column(migrated) -> None:
    _, conn = migrated
    assert (await _schema(conn))["triggers"] == []
    assert "attempts" not in await _columns(conn, "outbox")


async def test_a_new_ticket_starts_at_version_0_held_by_no_order(migrated) -> None:
    _, conn = migrated
    row = await conn.fetchrow(
        "INSERT INTO tickets (id, title, price, user_id) VALUES ($1, 't', 1, $2)"
        " RETURNING order_id, version, created_at, updated_at",
        uuid.uuid4(),
        uuid.uuid4(),
    )
    assert (row["order_id"], row["version"]) == (None, 0)
    assert row["created_at"] == row["updated_at"]


@pytest.mark.parametrize(
    ("title", "price", "version", "constraint"),
    [
        pytest.param("t", Decimal(0), 0, "ck_tickets_price_range", id="price-zero"),
        pytest.param("t", Decimal("1000000.01"), 0, "ck_tickets_price_range", id="price-above-maximum"),
        pytest.param("t", Decimal(1), -1, "ck_tickets_version_not_negative", id="negative-version"),
        pytest.param("", Decimal(1), 0, "ck_tickets_title_length", id="empty-title"),
    ],
)
async def test_the_database_refuses_tickets_the_api_refuses(
    migrated, title: str, price: Decimal, version: int, constraint: str
) -> None:
    _, conn = migrated
    insert = "INSERT INTO tickets (id, title, price, user_id, version) VALUES ($1, $2, $3, $4, $5)"
    assert await _violation(conn, insert, uuid.uuid4(), title, price, uuid.uuid4(), version) == constraint


async def test_ids_are_unique_and_an_order_has_one_tombstone(migrated) -> None:
    _, conn = migrated
    ticket_id, order_id = uuid.uuid4(), uuid.uuid4()
    insert_ticket = "INSERT INTO tickets (id, title, price, user_id) VALUES ($1, 't', 1, $2)"
    await conn.execute(insert_ticket, ticket_id, uuid.uuid4())
    assert await _violation(conn, insert_ticket, ticket_id, uuid.uuid4()) == "pk_tickets"
    insert_tombstone = "INSERT INTO cancelled_orders (order_id, ticket_id) VALUES ($1, $2)"
    await conn.execute(insert_tombstone, order_id, ticket_id)
    assert await _violation(conn, insert_tombstone, order_id, uuid.uuid4()) == "pk_cancelled_orders"


async def test_the_listing_reads_the_partial_index_of_available_tickets(migrated) -> None:
    _, conn = migrated
    definition = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tickets_available'")
    assert definition.endswith("USING btree (created_at DESC, id DESC) WHERE (order_id IS NULL)")


async def test_downgrade_removes_every_table_and_upgrade_brings_back_the_same_schema(migrated) -> None:
    url, conn = migrated
    before = await _schema(conn)
    await asyncio.to_thread(command.downgrade, _alembic(url), "base")
    assert await _tables(conn) == set()
    await asyncio.to_thread(command.upgrade, _alembic(url), "head")
    assert await _schema(conn) == before
