"""The one migration creates the schema the service's statements rely on (columns, keys, checks and the index
that forbids double booking), the database enforces it, and it downgrades and upgrades again to the same schema."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config

from ticketing_common.config import server_url_for_database
from ticketing_common.db import asyncpg_dsn, migrate, utcnow, violated_constraint
from ticketing_orders import queries
from ticketing_orders.config import Settings
from ticketing_orders.main import MIGRATIONS_DIR

OUR_TABLES = {"tickets", "orders", "charges"}
MESSAGING_TABLES = {"outbox", "processed_events", "parked_messages"}

# (column, type, nullable, default) in table order.
COLUMNS = {
    "tickets": [
        ("id", "uuid", False, None),
        ("title", "character varying(200)", False, None),
        ("price", "numeric(9,2)", False, None),
        ("user_id", "uuid", False, None),
        ("version", "integer", False, None),
    ],
    "orders": [
        ("id", "uuid", False, None),
        ("user_id", "uuid", False, None),
        ("status", "character varying(32)", False, None),
        ("expires_at", "timestamp with time zone", False, None),
        ("version", "integer", False, "0"),
        ("ticket_id", "uuid", False, None),
        ("created_at", "timestamp with time zone", False, "now()"),
    ],
    "charges": [
        ("id", "uuid", False, None),
        ("order_id", "uuid", False, None),
        ("stripe_id", "character varying(255)", False, None),
        ("amount", "integer", False, None),
        ("currency", "character varying(16)", False, None),
        ("refund_reason", "character varying(200)", True, None),
        ("received_at", "timestamp with time zone", False, "now()"),
    ],
}
CONSTRAINTS = {
    "pk_tickets": "PRIMARY KEY (id)",
    "ck_tickets_version_not_negative": "CHECK ((version >= 0))",
    "pk_orders": "PRIMARY KEY (id)",
    "fk_orders_ticket_id_tickets": "FOREIGN KEY (ticket_id) REFERENCES tickets(id)",
    "ck_orders_status_known": (
        "CHECK (((status)::text = ANY ((ARRAY['created'::character varying, 'cancelled'::character varying,"
        " 'complete'::character varying])::text[])))"
    ),
    "ck_orders_version_not_negative": "CHECK ((version >= 0))",
    "pk_charges": "PRIMARY KEY (id)",
    "fk_charges_order_id_orders": "FOREIGN KEY (order_id) REFERENCES orders(id)",
}
INDEXES = {
    "pk_tickets": "UNIQUE INDEX pk_tickets ON public.tickets USING btree (id)",
    "pk_orders": "UNIQUE INDEX pk_orders ON public.orders USING btree (id)",
    "uq_orders_active_ticket": (
        "UNIQUE INDEX uq_orders_active_ticket ON public.orders USING btree (ticket_id) WHERE ((status)::text = ANY"
        " ((ARRAY['created'::character varying, 'complete'::character varying])::text[]))"
    ),
    "ix_orders_user_created": (
        "INDEX ix_orders_user_created ON public.orders USING btree (user_id, created_at DESC, id DESC)"
    ),
    "pk_charges": "UNIQUE INDEX pk_charges ON public.charges USING btree (id)",
    "ix_charges_order_id": "INDEX ix_charges_order_id ON public.charges USING btree (order_id)",
    "ix_charges_refund_needed": (
        "INDEX ix_charges_refund_needed ON public.charges USING btree (received_at) WHERE (refund_reason IS NOT NULL)"
    ),
}


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _statements() -> dict[str, str]:
    """Every SQL statement of ``queries``, by name."""
    return {
        name: value
        for name, value in vars(queries).items()
        if name.isupper() and isinstance(value, str) and re.match(r"\s*(WITH|SELECT|INSERT|UPDATE|DELETE)\b", value)
    }


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def _schema(conn: asyncpg.Connection) -> dict[str, Any]:
    """Our tables as PostgreSQL describes them: columns, constraints, indexes."""
    columns = await conn.fetch(
        """
        SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
               NOT a.attnotnull AS nullable, pg_get_expr(d.adbin, d.adrelid) AS default
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relname = ANY ($1::text[]) AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
        """,
        list(OUR_TABLES),
    )
    constraints = await conn.fetch(
        """
        SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint
        WHERE conrelid = ANY (SELECT oid FROM pg_class WHERE relname = ANY ($1::text[]))
          AND contype <> 'n'  -- NOT NULL, a constraint since PostgreSQL 18: checked with the columns
        """,
        list(OUR_TABLES),
    )
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY ($1::text[])",
        list(OUR_TABLES),
    )
    described: dict[str, list[tuple[str, str, bool, str | None]]] = {}
    for row in columns:
        described.setdefault(row["table"], []).append((row["column"], row["type"], row["nullable"], row["default"]))
    return {
        "columns": described,
        "constraints": {row["conname"]: row["definition"] for row in constraints},
        "indexes": {row["indexname"]: row["indexdef"].removeprefix("CREATE ") for row in indexes},
    }


@pytest.fixture
async def migrated(settings: Settings) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A database of its own, migrated to head: its SQLAlchemy URL (for Alembic) and a connection."""
    url = server_url_for_database(settings.database_url, "ticketing_orders_migrations_test")
    await asyncio.to_thread(migrate, url, MIGRATIONS_DIR)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        yield url, conn
    finally:
        await conn.close()


async def test_the_migrations_create_the_tables_keys_checks_and_indexes_the_statements_rely_on(
    migrated: tuple[str, asyncpg.Connection],
) -> None:
    _, conn = migrated
    assert await _tables(conn) == OUR_TABLES | MESSAGING_TABLES | {"alembic_version"}
    schema = await _schema(conn)
    assert schema["columns"] == COLUMNS
    assert schema["constraints"] == CONSTRAINTS
    assert schema["indexes"] == INDEXES


async def test_every_statement_of_the_service_is_valid_against_the_migrated_schema(
    migrated: tuple[str, asyncpg.Connection],
) -> None:
    _, conn = migrated
    statements = _statements()
    assert {"INSERT_ORDER", "CHANGE_ORDER_STATUS", "APPLY_TICKET_UPDATES", "CLAIM_CHARGE"} <= set(statements)
    for name, sql in statements.items():
        try:
            await conn.prepare(sql)  # parsed, planned and type-checked by PostgreSQL, not run
        except asyncpg.PostgresError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


async def test_the_schema_refuses_what_the_service_must_never_store(migrated: tuple[str, asyncpg.Connection]) -> None:
    _, conn = migrated
    ticket_id = uuid.uuid4()
    insert_order = (
        "INSERT INTO orders (id, user_id, status, expires_at, version, ticket_id) VALUES ($1, $2, $3, $4, $5, $6)"
    )

    async def refused(sql: str, *args: object) -> str | None:
        with pytest.raises(asyncpg.IntegrityConstraintViolationError) as error:
            async with conn.transaction():
                await conn.execute(sql, *args)
        return violated_constraint(error.value)

    outer = conn.transaction()  # rolled back at the end: the migrated database stays empty
    await outer.start()
    try:
        await conn.execute(
            "INSERT INTO tickets (id, title, price, user_id, version) VALUES ($1, 'T', 10, $2, 0)",
            ticket_id,
            uuid.uuid4(),
        )
        await conn.execute(insert_order, uuid.uuid4(), uuid.uuid4(), "created", utcnow(), 0, ticket_id)

        assert await refused(insert_order, uuid.uuid4(), uuid.uuid4(), "paid", utcnow(), 0, ticket_id) == (
            "ck_orders_status_known"
        )
        assert await refused(insert_order, uuid.uuid4(), uuid.uuid4(), "cancelled", utcnow(), -1, ticket_id) == (
            "ck_orders_version_not_negative"
        )
        assert await refused(insert_order, uuid.uuid4(), uuid.uuid4(), "cancelled", utcnow(), 0, uuid.uuid4()) == (
            "fk_orders_ticket_id_tickets"
        )
        assert await refused(insert_order, uuid.uuid4(), uuid.uuid4(), "complete", utcnow(), 0, ticket_id) == (
            "uq_orders_active_ticket"
        )
        assert await refused("UPDATE tickets SET version = -1 WHERE id = $1", ticket_id) == (
            "ck_tickets_version_not_negative"
        )
        assert await refused(
            "INSERT INTO charges (id, order_id, stripe_id, amount, currency) VALUES ($1, $2, 'ch', 1, 'usd')",
            uuid.uuid4(),
            uuid.uuid4(),
        ) == ("fk_charges_order_id_orders")
    finally:
        await outer.rollback()


async def test_the_migration_creates_no_trigger_and_no_function(migrated: tuple[str, asyncpg.Connection]) -> None:
    _, conn = migrated

    triggers = await conn.fetchval("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")
    functions = await conn.fetchval("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace")

    assert (triggers, functions) == (0, 0)


async def test_the_migration_downgrades_to_an_empty_database_and_upgrades_again_to_the_same_schema(
    migrated: tuple[str, asyncpg.Connection],
) -> None:
    url, conn = migrated
    before = await _schema(conn)

    await asyncio.to_thread(command.downgrade, _alembic(url), "base")
    assert await _tables(conn) == {"alembic_version"}

    await asyncio.to_thread(command.upgrade, _alembic(url), "head")
    assert await _tables(conn) == OUR_TABLES | MESSAGING_TABLES | {"alembic_version"}
    assert await _schema(conn) == before
