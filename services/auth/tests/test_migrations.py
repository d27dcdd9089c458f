"""The one migration creates the schema the service's statements rely on (columns, the unique email, the indexes
the limits count with), the database enforces it, and it downgrades and upgrades again to the same schema."""

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

from ticketing_auth import queries
from ticketing_auth.config import Settings
from ticketing_auth.main import MIGRATIONS_DIR
from ticketing_common.config import server_url_for_database
from ticketing_common.db import asyncpg_dsn, migrate, violated_constraint

OUR_TABLES = {"users", "signin_failures"}
MESSAGING_TABLES = {"outbox", "processed_events", "parked_messages"}

# (column, type, nullable, default) in table order.
COLUMNS = {
    "users": [
        ("id", "uuid", False, None),
        ("email", "character varying(320)", False, None),
        ("password_hash", "text", False, None),
        ("version", "integer", False, "0"),
        ("created_at", "timestamp with time zone", False, "now()"),
        ("updated_at", "timestamp with time zone", False, "now()"),
    ],
    "signin_failures": [
        ("id", "bigint", False, None),  # an identity column: generated, not a default
        ("email", "character varying(320)", False, None),
        ("client_address", "character varying(64)", False, None),
        ("failed_at", "timestamp with time zone", False, "now()"),
    ],
}
CONSTRAINTS = {
    "pk_users": "PRIMARY KEY (id)",
    queries.USERS_EMAIL_UNIQUE: "UNIQUE (email)",
    "pk_signin_failures": "PRIMARY KEY (id)",
}
INDEXES = {
    "pk_users": "UNIQUE INDEX pk_users ON public.users USING btree (id)",
    "uq_users_email": "UNIQUE INDEX uq_users_email ON public.users USING btree (email)",
    "pk_signin_failures": "UNIQUE INDEX pk_signin_failures ON public.signin_failures USING btree (id)",
    # Every count is of one client address's rows within the window.
    "ix_signin_failures_client_address_failed_at": (
        "INDEX ix_signin_failures_client_address_failed_at ON public.signin_failures"
        " USING btree (client_address, failed_at)"
    ),
    # The purge takes the rows that left the window.
    "ix_signin_failures_failed_at": (
        "INDEX ix_signin_failures_failed_at ON public.signin_failures USING btree (failed_at)"
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
    url = server_url_for_database(settings.database_url, "ticketing_auth_migrations_test")
    await asyncio.to_thread(migrate, url, MIGRATIONS_DIR)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        yield url, conn
    finally:
        await conn.close()


async def test_the_migration_creates_the_tables_keys_and_indexes_the_statements_rely_on(
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
    assert {"INSERT_USER", "UPDATE_USER", "RESERVE_SIGNIN", "RESERVE_FOR_USER", "RELEASE_ATTEMPT"} <= set(statements)
    for name, sql in statements.items():
        try:
            await conn.prepare(sql)  # parsed, planned and type-checked by PostgreSQL, not run
        except asyncpg.PostgresError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


async def test_the_schema_refuses_a_second_user_with_one_email_under_the_constraint_the_service_names(
    migrated: tuple[str, asyncpg.Connection],
) -> None:
    _, conn = migrated
    insert = "INSERT INTO users (id, email, password_hash) VALUES ($1, 'ada@example.com', 'x')"
    tx = conn.transaction()  # rolled back at the end: the migrated database stays empty
    await tx.start()
    try:
        await conn.execute(insert, uuid.uuid4())
        with pytest.raises(asyncpg.UniqueViolationError) as refused:
            await conn.execute(insert, uuid.uuid4())
    finally:
        await tx.rollback()

    assert violated_constraint(refused.value) == queries.USERS_EMAIL_UNIQUE


async def test_a_failed_attempt_gets_its_id_and_time_from_the_database(
    migrated: tuple[str, asyncpg.Connection],
) -> None:
    _, conn = migrated
    tx = conn.transaction()
    await tx.start()
    try:
        row = await conn.fetchrow(
            "INSERT INTO signin_failures (email, client_address) VALUES ('ada@example.com', '203.0.113.9')"
            " RETURNING id, failed_at, failed_at = now() AS now"
        )
        assert row is not None
        assert row["id"] is not None
        assert row["now"]
    finally:
        await tx.rollback()


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
