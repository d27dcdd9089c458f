"""The schema the migrations create holds the guarantees the service's statements rely on: one payment per order
(the name ``queries.RECORD_PAYMENT`` resolves conflicts on), unique Stripe ids, sane amounts, payments of known
orders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from fastapi import FastAPI

from ticketing_common.db import violated_constraint
from ticketing_payments import queries
from ticketing_payments.queries import PAYMENTS_ORDER_UNIQUE


async def an_order(app: FastAPI, *, price: str = "19.99") -> uuid.UUID:
    order_id = uuid.uuid4()
    await app.state.db.pool.execute(
        "INSERT INTO orders (id, user_id, status, price, expires_at, version) VALUES ($1, $2, 'created', $3, $4, 0)",
        order_id,
        uuid.uuid4(),
        Decimal(price),
        datetime.now(UTC) + timedelta(minutes=15),
    )
    return order_id


async def insert_payment(
    app: FastAPI, order_id: uuid.UUID, *, stripe_id: str | None = None, amount: int = 1999
) -> None:
    await app.state.db.pool.execute(
        "INSERT INTO payments (id, order_id, stripe_id, amount, currency) VALUES ($1, $2, $3, $4, 'usd')",
        uuid.uuid4(),
        order_id,
        stripe_id or f"pi_{uuid.uuid4().hex}",
        amount,
    )


async def test_the_tables_carry_their_named_constraints(app: FastAPI) -> None:
    rows = await app.state.db.pool.fetch(
        "SELECT conrelid::regclass::text AS table_name, conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
    )

    names = {(row["table_name"], row["conname"]) for row in rows}

    assert {
        ("orders", "pk_orders"),
        ("orders", "ck_orders_price_not_negative"),
        ("orders", "ck_orders_charge_attempt_not_negative"),
        ("users", "pk_users"),
        ("payments", "pk_payments"),
        ("payments", PAYMENTS_ORDER_UNIQUE),
        ("payments", "uq_payments_stripe_id"),
        ("payments", "fk_payments_order_id_orders"),
        ("payments", "ck_payments_amount_positive"),
    } <= names


async def test_a_second_payment_of_an_order_is_refused_by_the_database(app: FastAPI) -> None:
    order_id = await an_order(app)
    await insert_payment(app, order_id)

    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await insert_payment(app, order_id)

    assert violated_constraint(raised.value) == PAYMENTS_ORDER_UNIQUE


async def test_recording_a_payment_of_an_order_paid_already_stores_nothing_and_returns_none(app: FastAPI) -> None:
    order_id = await an_order(app)
    pool = app.state.db.pool
    first = await queries.record_payment(
        pool, payment_id=uuid.uuid4(), order_id=order_id, stripe_id="pi_first", amount=1999, currency="usd"
    )
    assert first is not None
    completed = await queries.find_order(pool, order_id)
    assert completed is not None
    assert completed.status == "complete"
    await pool.execute("UPDATE orders SET status = 'created' WHERE id = $1", order_id)

    second = await queries.record_payment(
        pool, payment_id=uuid.uuid4(), order_id=order_id, stripe_id="pi_second", amount=1999, currency="usd"
    )

    assert second is None
    assert await queries.count_payments(pool) == 1
    assert (await queries.find_payment_of_order(pool, order_id)) == first
    untouched = await queries.find_order(pool, order_id)
    assert untouched is not None
    assert untouched.status == "created"


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("UPDATE orders SET price = -0.01", "ck_orders_price_not_negative"),
        ("UPDATE orders SET charge_attempt = -1", "ck_orders_charge_attempt_not_negative"),
    ],
)
async def test_an_order_copy_keeps_a_price_and_an_attempt_that_are_not_negative(
    app: FastAPI, statement: str, constraint: str
) -> None:
    await an_order(app)

    with pytest.raises(asyncpg.CheckViolationError) as raised:
        await app.state.db.pool.execute(statement)

    assert violated_constraint(raised.value) == constraint


async def test_a_payment_has_a_positive_amount_a_unique_stripe_id_and_a_known_order(app: FastAPI) -> None:
    order_id, other_order_id = await an_order(app), await an_order(app)
    await insert_payment(app, order_id, stripe_id="pi_taken")

    with pytest.raises(asyncpg.UniqueViolationError) as taken:
        await insert_payment(app, other_order_id, stripe_id="pi_taken")
    with pytest.raises(asyncpg.CheckViolationError) as free:
        await insert_payment(app, other_order_id, amount=0)
    with pytest.raises(asyncpg.ForeignKeyViolationError) as unknown:
        await insert_payment(app, uuid.uuid4())

    assert violated_constraint(taken.value) == "uq_payments_stripe_id"
    assert violated_constraint(free.value) == "ck_payments_amount_positive"
    assert violated_constraint(unknown.value) == "fk_payments_order_id_orders"
