"""The one migration builds the schema the service's statements rely on: one payment per order (the constraint
``queries.RECORD_PAYMENT`` resolves conflicts on), unique Stripe ids, sane amounts, payments of known orders; and
it downgrades and upgrades cleanly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from ticketing_common.db import violated_constraint
from ticketing_common.testing import ALEMBIC_TABLE, MigratedDatabase
from ticketing_payments import queries
from ticketing_payments.queries import PAYMENTS_ORDER_UNIQUE

TABLES = {"orders", "users", "payments", "outbox", "processed_events", "parked_messages"}
# (column, type, nullable, default) in table order: the order's price is numeric(9,2).
COLUMNS = {
    "orders": [
        ("id", "uuid", False, None),
        ("user_id", "uuid", False, None),
        ("status", "character varying(32)", False, None),
        ("price", "numeric(9,2)", False, None),
        ("expires_at", "timestamp with time zone", False, None),
        ("version", "integer", False, None),
        ("charge_attempt", "integer", False, "0"),
        ("trace_parent", "character varying(55)", True, None),
    ],
    "users": [
        ("id", "uuid", False, None),
        ("email", "character varying(320)", False, None),
        ("version", "integer", False, None),
    ],
    "payments": [
        ("id", "uuid", False, None),
        ("order_id", "uuid", False, None),
        ("stripe_id", "character varying(255)", False, None),
        ("amount", "integer", False, None),
        ("currency", "character varying(3)", False, None),
        ("created_at", "timestamp with time zone", False, "now()"),
        ("refund_id", "character varying(255)", True, None),
        ("refunded_at", "timestamp with time zone", True, None),
    ],
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


async def test_the_tables_have_the_columns_the_queries_use(migrated_db: MigratedDatabase) -> None:
    assert await migrated_db.tables() == TABLES | {ALEMBIC_TABLE}
    assert (await migrated_db.schema(COLUMNS.keys())).columns == COLUMNS


async def test_the_tables_carry_their_named_constraints_and_the_indexes_behind_them(
    migrated_db: MigratedDatabase,
) -> None:
    schema = await migrated_db.schema()
    assert set(schema.constraints) >= CONSTRAINTS
    backing = {"pk_orders", "pk_users", "pk_payments", PAYMENTS_ORDER_UNIQUE, "uq_payments_stripe_id"}
    assert backing <= set(schema.indexes)


async def test_the_outbox_is_plain_no_trigger_and_no_attempts_column(migrated_db: MigratedDatabase) -> None:
    schema = await migrated_db.schema()
    assert schema.triggers == []
    assert "attempts" not in schema.column_names("outbox")


async def test_a_new_order_copy_starts_at_charge_attempt_0(migrated_db: MigratedDatabase) -> None:
    conn = migrated_db.conn
    order_id = await an_order(conn)
    assert await conn.fetchval("SELECT charge_attempt FROM orders WHERE id = $1", order_id) == 0


async def test_a_second_payment_of_an_order_is_refused_by_the_database(migrated_db: MigratedDatabase) -> None:
    conn = migrated_db.conn
    order_id = await an_order(conn)
    await insert_payment(conn, order_id)

    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await insert_payment(conn, order_id)

    assert violated_constraint(raised.value) == PAYMENTS_ORDER_UNIQUE


async def test_recording_a_payment_of_an_order_paid_already_stores_nothing_and_returns_none(
    migrated_db: MigratedDatabase,
) -> None:
    conn = migrated_db.conn
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
    migrated_db: MigratedDatabase, statement: str, constraint: str
) -> None:
    conn = migrated_db.conn
    await an_order(conn)

    assert await migrated_db.violation(statement, error=asyncpg.CheckViolationError) == constraint


async def test_a_payment_has_a_positive_amount_a_unique_stripe_id_and_a_known_order(
    migrated_db: MigratedDatabase,
) -> None:
    conn = migrated_db.conn
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


async def test_downgrade_removes_every_table_and_upgrade_brings_back_the_same_schema(
    migrated_db: MigratedDatabase,
) -> None:
    await migrated_db.assert_round_trip()
