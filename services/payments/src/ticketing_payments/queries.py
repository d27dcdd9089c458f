"""Every SQL statement of the payments service, and the rows they return as plain typed objects.

Tables (created by ``migrations/versions/0001_initial.py``): ``orders`` (copies of the orders service's orders,
whose ``charge_attempt`` numbers the Stripe idempotency key of the next charge), ``users`` (copies of users'
emails), ``payments`` (at most one per order: ``uq_payments_order_id``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ticketing_common.db import Executor
from ticketing_common.events import OrderCreated, OrderStatus

PAYMENTS_ORDER_UNIQUE = "uq_payments_order_id"


@dataclass(frozen=True)
class Payment:
    """A successful charge of an order; ``refund_id`` / ``refunded_at`` are set when the order was cancelled after
    it (the buyer cancelled, or the order expired, before the orders service heard of the charge)."""

    id: uuid.UUID
    order_id: uuid.UUID
    stripe_id: str
    amount: int
    currency: str
    created_at: datetime
    refund_id: str | None
    refunded_at: datetime | None


@dataclass(frozen=True)
class OrderToPay:
    """An order's copy, locked for a payment, with what the payment decides on."""

    user_id: uuid.UUID
    status: str
    price: Decimal
    expires_at: datetime
    charge_attempt: int
    paid: bool
    buyer_email: str | None  # from the user events; None until one arrived
    trace_parent: str | None = None  # the order's trace (tracing.span's parent); None while tracing is off


@dataclass(frozen=True)
class CopyVersion:
    """A version-gated change of a copy: the copy's version when the statement ran, and whether it applied."""

    version: int
    applied: bool
    previous_status: str | None = None


# -- orders ------------------------------------------------------------------------------------------------------

COPY_ORDER = """
INSERT INTO orders (id, user_id, status, price, expires_at, version, trace_parent)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO NOTHING
"""
COPY_ORDERS = """
INSERT INTO orders (id, user_id, status, price, expires_at, version)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[], $5::timestamptz[], $6::int[])
ON CONFLICT (id) DO NOTHING
"""

# The copy is locked, gated and cancelled in one statement. ``copy`` waits for the row lock (a payment in
# progress holds it through its Stripe call) and then sees the row as that payment committed it, status included.
CANCEL_ORDER = """
WITH copy AS (
    SELECT id, version, status FROM orders WHERE id = $1 FOR UPDATE
), cancelled AS (
    UPDATE orders SET status = $3, version = $2
    FROM copy WHERE orders.id = copy.id AND copy.version = $2 - 1
    RETURNING orders.id
)
SELECT copy.version, copy.status AS previous_status, EXISTS (SELECT FROM cancelled) AS applied FROM copy
"""

# The row lock serialises the payments of one order (on every replica) from the checks to the commit. After a wait
# for it, the sub-selects still read the statement's older snapshot: ``status`` (from the locked row itself, so
# ``complete`` once another payment committed) is what tells a fresh payment apart; ``paid`` only backs it up.
LOCK_ORDER_TO_PAY = """
SELECT o.user_id, o.status, o.price, o.expires_at, o.charge_attempt, o.trace_parent,
       EXISTS (SELECT FROM payments p WHERE p.order_id = o.id) AS paid,
       (SELECT u.email FROM users u WHERE u.id = $2) AS buyer_email
FROM orders o WHERE o.id = $1
FOR UPDATE OF o
"""

NEXT_CHARGE_ATTEMPT = "UPDATE orders SET charge_attempt = charge_attempt + 1 WHERE id = $1"

# The payment and the copy's completion in one statement; an order paid already inserts nothing and returns no row.
RECORD_PAYMENT = f"""
WITH paid AS (
    INSERT INTO payments (id, order_id, stripe_id, amount, currency) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT ON CONSTRAINT {PAYMENTS_ORDER_UNIQUE} DO NOTHING
    RETURNING id, order_id, stripe_id, amount, currency, created_at, refund_id, refunded_at
), completed AS (
    UPDATE orders SET status = $6 FROM paid WHERE orders.id = paid.order_id
)
SELECT * FROM paid
"""  # noqa: S608 (a constant constraint name)


async def copy_order(db: Executor, event: OrderCreated, *, trace_parent: str | None = None) -> None:
    """Start the order's copy; a copy that exists already stays as it is."""
    await db.execute(
        COPY_ORDER,
        event.id,
        event.user_id,
        str(event.status),
        event.ticket.price,
        event.expires_at,
        event.version,
        trace_parent,
    )


async def copy_orders(db: Executor, copies: Sequence[OrderCreated]) -> None:
    """:func:`copy_order` for the events of distinct orders, in one statement."""
    await db.execute(
        COPY_ORDERS,
        [e.id for e in copies],
        [e.user_id for e in copies],
        [str(e.status) for e in copies],
        [e.ticket.price for e in copies],
        [e.expires_at for e in copies],
        [e.version for e in copies],
    )


async def cancel_order(db: Executor, order_id: uuid.UUID, version: int) -> CopyVersion | None:
    """Cancel the copy if ``version`` is its next one; None when there is no copy (yet)."""
    row = await db.fetchrow(CANCEL_ORDER, order_id, version, str(OrderStatus.CANCELLED))
    return CopyVersion(**row) if row is not None else None


async def lock_order_to_pay(db: Executor, order_id: uuid.UUID, buyer_id: uuid.UUID) -> OrderToPay | None:
    """Lock the order's copy until the end of the transaction; None when there is no copy (yet)."""
    row = await db.fetchrow(LOCK_ORDER_TO_PAY, order_id, buyer_id)
    return OrderToPay(**row) if row is not None else None


async def next_charge_attempt(db: Executor, order_id: uuid.UUID) -> None:
    await db.execute(NEXT_CHARGE_ATTEMPT, order_id)


async def record_payment(
    db: Executor,
    *,
    payment_id: uuid.UUID,
    order_id: uuid.UUID,
    stripe_id: str,
    amount: int,
    currency: str,
) -> Payment | None:
    """Store the order's payment and complete its copy; None (and nothing changed) when it has a payment already."""
    row = await db.fetchrow(
        RECORD_PAYMENT, payment_id, order_id, stripe_id, amount, currency, str(OrderStatus.COMPLETE)
    )
    return Payment(**row) if row is not None else None


# -- payments ----------------------------------------------------------------------------------------------------

PAYMENT_COLUMNS = "id, order_id, stripe_id, amount, currency, created_at, refund_id, refunded_at"
FIND_UNREFUNDED_PAYMENT = f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 AND refunded_at IS NULL"  # noqa: S608
RECORD_REFUND = "UPDATE payments SET refund_id = $2, refunded_at = now() WHERE id = $1"


async def find_unrefunded_payment(db: Executor, order_id: uuid.UUID) -> Payment | None:
    row = await db.fetchrow(FIND_UNREFUNDED_PAYMENT, order_id)
    return Payment(**row) if row is not None else None


async def record_refund(db: Executor, payment_id: uuid.UUID, refund_id: str | None) -> None:
    await db.execute(RECORD_REFUND, payment_id, refund_id)


# -- users -------------------------------------------------------------------------------------------------------

COPY_USER = "INSERT INTO users (id, email, version) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING"
UPDATE_USER = """
WITH copy AS (
    SELECT id, version FROM users WHERE id = $1 FOR UPDATE
), updated AS (
    UPDATE users SET email = $2, version = $3
    FROM copy WHERE users.id = copy.id AND copy.version = $3 - 1
    RETURNING users.id
)
SELECT copy.version, EXISTS (SELECT FROM updated) AS applied FROM copy
"""


async def copy_user(db: Executor, user_id: uuid.UUID, email: str, version: int) -> None:
    """Start the user's email copy; an existing copy stays as it is."""
    await db.execute(COPY_USER, user_id, email, version)


async def update_user(db: Executor, user_id: uuid.UUID, email: str, version: int) -> CopyVersion | None:
    """Take the new email if ``version`` is the copy's next one; None when there is no copy (yet)."""
    row = await db.fetchrow(UPDATE_USER, user_id, email, version)
    return CopyVersion(**row) if row is not None else None
