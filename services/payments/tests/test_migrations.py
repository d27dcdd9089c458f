"""The one migration builds the schema the service's statements rely on: one payment per order (the constraint
``queries.RECORD_PAYMENT`` resolves conflicts on), unique Stripe ids, sane amounts, payments of known orders; and
it downgrades and upgrades cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config

from ticketing_common.config import server_url_for_database
from ticketing_common.db import asyncpg_dsn, migrate, violated_constraint
from ticketing_payments import queries
from ticketing_payments.main import MIGRATIONS_DIR
from ticketing_payments.queries import PAYMENTS_ORDER_UNIQUE

TABLES = {"orders", "users", "payments", "outbox", "processed_events", "parked_messages"}
COLUMNS = {
    "orders": {
        "id": ("uuid", "NO"),
        "user_id": ("uuid", "NO"),
        "status": ("character varying", "NO"),
        "price": ("numeric", "NO"),
        "expires_at": ("timestamp with time zone", "NO"),
        "version": ("integer", "NO"),
        "charge_attempt": ("integer", "NO"),
    },
    "users": {
        "id": ("uuid", "NO"),
        "email": ("character varying", "NO"),
        "version": ("integer", "NO"),
    },
    "payments": {
        "id": ("uuid", "NO"),
        "order_id": ("uuid", "NO"),
        "stripe_id": ("character varying", "NO"),
        "amount": ("integer", "NO"),
        "currency": ("character varying", "NO"),
        "created_at": ("timestamp with time zone", "NO"),
        "refund_id": ("character varying", "YES"),
        "refunded_at": ("timestamp with time zone", "YES"),
    },
}
CONSTRAINTS = {
    ("orders", "pk_orders"),
    ("orders", "ck_orders_price_not_negative"),
    ("orders", "ck_orders_charge_attempt_not_negative"),
    ("users", "pk_users"),
    ("payments", "pk_payments"),
    ("payments", PAYMENTS_ORDER_UNIQUE),
    ("payments", "uq_payments_stripe_id"),
    ("payments", "fk_payments_order_id_orders"),
    ("payments", "ck_payments_amount_positive"),
}


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@pytest.fixture
async def migrated(settings) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A database of its own, migrated to head, and a connection to it."""
    url = server_url_for_database(settings.database_url, "ticketing_payments_migrations_test")
    await asyncio.to_thread(migrate, url, MIGRATIONS_DIR)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("TRUNCATE payments, users, orders")
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


async def an_order(conn: asyncpg.Connection, *, price: str = "19.99") -> uuid.UUID:
    order_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO orders (id, user_id, status, price, expires_at, version) VALUES ($1, $2, 'created', $3, $4, 0)",
        order_id,
        uuid.uuid4(),
        Decimal(price),
        datetime.now(UTC) + timedelta(minutes=15),
    )
    return order_id


async def insert_payment(
    conn: asyncpg.Connection, order_id: uuid.UUID, *, stripe_id: str | None = None, amount: int = 1999
) -> None:
    await conn.execute(
        "INSERT INTO payments (id, order_id, stripe_id, amount, currency) VALUES ($1, $2, $3, $4, 'usd')",
        uuid.uuid4(),
        order_id,
        stripe_id or f"pi_{uuid.uuid4().hex}",
        amount,
    )


async def test_the_tables_have_the_columns_the_queries_use(migrated) -> None:
    _, conn = migrated
    assert await _tables(conn) == TABLES
    for table, columns in COLUMNS.items():
        assert await _columns(conn, table) == columns
    price = await conn.fetchrow(
        "SELECT numeric_precision, numeric_scale FROM information_schema.columns"
        " WHERE table_name = 'orders' AND column_name = 'price'"
    )
    assert tuple(price) == (9, 2)


async def test_the_tables_carry_their_named_constraints_and_the_indexes_behind_them(migrated) -> None:
    _, conn = migrated
    schema = await _schema(conn)
    assert {(table, name) for table, name, _ in schema["constraints"]} >= CONSTRAINTS
    assert {"pk_orders", "pk_users", "pk_payments", PAYMENTS_ORDER_UNIQUE, "uq_payments_stripe_id"} <= {
        name for name, _ in schema["indexes"]
    }


async def test_the_outbox_is_plain_no_trigger_and_no_attempts_column(migrated) -> None:
    _, conn = migrated
    assert (await _schema(conn))["triggers"] == []
    assert "attempts" not in await _columns(conn, "outbox")


async def test_a_new_order_copy_starts_at_charge_attempt_0(migrated) -> None:
    _, conn = migrated
    order_id = await an_order(conn)
    assert await conn.fetchval("SELECT charge_attempt FROM orders WHERE id = $1", order_id) == 0


async def test_a_second_payment_of_an_order_is_refused_by_the_database(migrated) -> None:
    _, conn = migrated
    order_id = await an_order(conn)
    await insert_payment(conn, order_id)

    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await insert_payment(conn, order_id)

    assert violated_constraint(raised.value) == PAYMENTS_ORDER_UNIQUE


async def test_recording_a_payment_of_an_order_paid_already_stores_nothing_and_returns_none(migrated) -> None:
    _, conn = migrated
    order_id = await an_order(conn)
    first = await queries.record_payment(
        conn, payment_id=uuid.uuid4(), order_id=order_id, stripe_id="pi_first", amount=1999, currency="usd"
    )
    assert first is not None
    assert await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "complete"
    await conn.execute("UPDATE orders SET status = 'created' WHERE id = $1", order_id)

    second = await queries.record_payment(
        conn, payment_id=uuid.uuid4(), order_id=order_id, stripe_id="pi_second", amount=1999, currency="usd"
    )

    assert second is None
    assert await conn.fetchval("SELECT array_agg(stripe_id) FROM payments") == ["pi_first"]
    assert await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "created"


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("UPDATE orders SET price = -0.01", "ck_orders_price_not_negative"),
        ("UPDATE orders SET charge_attempt = -1", "ck_orders_charge_attempt_not_negative"),
    ],
)
async def test_an_order_copy_keeps_a_price_and_an_attempt_that_are_not_negative(
    migrated, statement: str, constraint: str
) -> None:
    _, conn = migrated
    await an_order(conn)

    with pytest.raises(asyncpg.CheckViolationError) as raised:
        await conn.execute(statement)

    assert violated_constraint(raised.value) == constraint


async def test_a_payment_has_a_positive_amount_a_unique_stripe_id_and_a_known_order(migrated) -> None:
    _, conn = migrated
    order_id, other_order_id = await an_order(conn), await an_order(conn)
    await insert_payment(conn, order_id, stripe_id="pi_taken")

    with pytest.raises(asyncpg.UniqueViolationError) as taken:
        await insert_payment(conn, other_order_id, stripe_id="pi_taken")
    with pytest.raises(asyncpg.CheckViolationError) as free:
        await insert_payment(conn, other_order_id, amount=0)
    with pytest.raises(asyncpg.ForeignKeyViolationError) as unknown:
        await insert_payment(conn, uuid.uuid4())

    assert violated_constraint(taken.value) == "uq_payments_stripe_id"
    assert violated_constraint(free.value) == "ck_payments_amount_positive"
    assert violated_constraint(unknown.value) == "fk_payments_order_id_orders"


async def test_downgrade_removes_every_table_and_upgrade_brings_back_the_same_schema(migrated) -> None:
    url, conn = migrated
    before = await _schema(conn)
    await asyncio.to_thread(command.downgrade, _alembic(url), "base")
    assert await _tables(conn) == set()
    await asyncio.to_thread(command.upgrade, _alembic(url), "head")
    assert await _schema(conn) == before
