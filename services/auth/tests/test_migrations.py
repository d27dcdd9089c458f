"""The hand-written migrations create the schema the service's statements rely on, and its constraints hold."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from fastapi import FastAPI

from ticketing_auth import queries

SQL_VERBS = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}


def _statements() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(queries).items()
        if name.isupper() and isinstance(value, str) and value.split(None, 1)[0].upper() in SQL_VERBS
    }


async def _columns(app: FastAPI, table: str) -> dict[str, tuple[str, str, int | None, str | None]]:
    rows = await app.state.db.pool.fetch(
        """
        SELECT column_name, data_type, is_nullable, character_maximum_length, column_default
        FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1
        """,
        table,
    )
    return {
        r["column_name"]: (r["data_type"], r["is_nullable"], r["character_maximum_length"], r["column_default"])
        for r in rows
    }


async def test_every_statement_of_the_service_prepares_against_the_migrated_schema(app: FastAPI) -> None:
    statements = _statements()
    assert {"INSERT_USER", "UPDATE_USER", "RESERVE_SIGNIN", "RESERVE_FOR_USER", "RELEASE_ATTEMPT"} <= set(statements)

    async with app.state.db.pool.acquire() as conn:
        for name, sql in statements.items():
            try:
                await conn.prepare(sql)  # names, types and parameter types are checked by the server
            except asyncpg.PostgresError as exc:
                pytest.fail(f"{name}: {exc}")


async def test_users_have_the_columns_the_service_reads_and_writes(app: FastAPI) -> None:
    columns = await _columns(app, "users")

    assert {name: column[:3] for name, column in columns.items()} == {
        "id": ("uuid", "NO", None),
        "email": ("character varying", "NO", queries.EMAIL_MAX_LENGTH),
        "password_hash": ("text", "NO", None),
        "version": ("integer", "NO", None),
        "created_at": ("timestamp with time zone", "NO", None),
        "updated_at": ("timestamp with time zone", "NO", None),
    }
    assert columns["version"][3] == "0"
    assert columns["created_at"][3] == columns["updated_at"][3] == "now()"


async def test_signin_failures_have_the_columns_the_limits_count(app: FastAPI) -> None:
    columns = await _columns(app, "signin_failures")

    assert {name: column[:3] for name, column in columns.items()} == {
        "id": ("bigint", "NO", None),
        "email": ("character varying", "NO", queries.EMAIL_MAX_LENGTH),
        "client_address": ("character varying", "NO", queries.CLIENT_ADDRESS_MAX_LENGTH),
        "failed_at": ("timestamp with time zone", "NO", None),
    }
    assert columns["failed_at"][3] == "now()"


async def test_the_email_is_unique_by_the_constraint_the_service_names(app: FastAPI) -> None:
    definition = await app.state.db.pool.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1 AND conrelid = 'users'::regclass",
        queries.USERS_EMAIL_UNIQUE,
    )
    assert definition == "UNIQUE (email)"
    insert = "INSERT INTO users (id, email, password_hash) VALUES ($1, 'ada@example.com', 'x')"
    await app.state.db.pool.execute(insert, uuid.uuid4())

    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await app.state.db.pool.execute(insert, uuid.uuid4())

    assert raised.value.constraint_name == queries.USERS_EMAIL_UNIQUE


async def test_signin_failures_are_indexed_for_the_limits_and_the_purge(app: FastAPI) -> None:
    rows = await app.state.db.pool.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'signin_failures'"
    )
    indexes = {r["indexname"]: r["indexdef"].partition(" USING ")[2] for r in rows}

    assert indexes == {
        "pk_signin_failures": "btree (id)",
        # Every count is of one address's rows within the window.
        "ix_signin_failures_client_address_failed_at": "btree (client_address, failed_at)",
        "ix_signin_failures_failed_at": "btree (failed_at)",
    }


async def test_the_messaging_tables_exist_with_the_outbox_pending_index(app: FastAPI) -> None:
    tables = {
        r["tablename"]
        for r in await app.state.db.pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    pending = await app.state.db.pool.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_outbox_pending'")

    assert tables == {"alembic_version", "users", "signin_failures", "outbox", "processed_events", "parked_messages"}
    assert pending is not None
    assert pending.endswith("WHERE (sent_at IS NULL)")
