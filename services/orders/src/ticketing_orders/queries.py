"""Every statement of the orders service, and the typed rows they return.

The tables are created by ``migrations/versions/0001_initial.py``; this module is the only place that knows their
columns. Each function runs one statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from ticketing_common.db import Executor
from ticketing_common.events import ChargeCreated, OrderStatus, TicketCreated, TicketUpdated


@dataclass(frozen=True)
class Ticket:
    """This service's copy of a ticket; ``version`` is the last version applied, ``user_id`` the seller."""

    id: uuid.UUID
    title: str
    price: Decimal
    user_id: uuid.UUID
    version: int


@dataclass(frozen=True)
class Order:
    """An order as its status changes see it (without its ticket)."""

    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    expires_at: datetime
    version: int
    ticket_id: uuid.UUID


@dataclass(frozen=True)
class OrderWithTicket:
    """An order as its buyer sees it: with the ticket as the copy knows it now."""

    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    expires_at: datetime
    version: int
    ticket: Ticket


@dataclass(frozen=True)
class TicketAvailability:
    """A ticket as a buyer finds it: the copy (None when there is no such ticket) and whether an active order
    holds it now."""

    ticket: Ticket | None
    held: bool


@dataclass(frozen=True)
class OrderAttempt:
    """What placing an order found: the ticket (None when the copy has no such ticket) and whether the order
    was inserted (False: the buyer is the seller, or an active order holds the ticket)."""

    ticket: Ticket | None
    inserted: bool


@dataclass(frozen=True)
class TicketUpdateOutcome:
    """One ``ticket.updated`` as the statement met it: the copy's version before (None: no copy)."""

    ticket_id: uuid.UUID
    version: int
    copy_version: int | None


@dataclass(frozen=True)
class Charge:
    """A charge the payments service reported; ``refund_reason`` is set when it did not pay its order."""

    id: uuid.UUID
    order_id: uuid.UUID
    stripe_id: str
    amount: int
    currency: str
    refund_reason: str | None
    received_at: datetime


@dataclass(frozen=True)
class ChargeClaim:
    """The order a charge names, as read by the statement that recorded the charge; ``charge`` is None when the
    charge was already recorded (by an earlier event, or a concurrent replica)."""

    order: Order
    charge: Charge | None


# An active order is one in created or complete (the predicate of uq_orders_active_ticket).
FIND_TICKET_FOR_ORDER = """
SELECT id, title, price, user_id, version,
       EXISTS (
           SELECT FROM orders WHERE ticket_id = $1 AND status IN ('created', 'complete')
       ) AS held
FROM tickets WHERE id = $1
"""

# Reads the ticket and inserts the order unless the buyer is the seller; ON CONFLICT on uq_orders_active_ticket
# answers "reserved" in the result (after waiting for a concurrent insert's outcome) instead of raising.
INSERT_ORDER = """
WITH ticket AS (
    SELECT id, title, price, user_id, version FROM tickets WHERE id = $2
), inserted AS (
    INSERT INTO orders (id, user_id, status, expires_at, version, ticket_id)
    SELECT $1, $3, 'created', $4, 0, ticket.id FROM ticket WHERE ticket.user_id <> $3
    ON CONFLICT (ticket_id) WHERE status IN ('created', 'complete') DO NOTHING
    RETURNING id
)
SELECT ticket.id, ticket.title, ticket.price, ticket.user_id, ticket.version,
       EXISTS (SELECT FROM inserted) AS inserted
FROM ticket
"""

_ORDER_WITH_TICKET = """
SELECT o.id, o.user_id, o.status, o.expires_at, o.version,
       t.id AS ticket_id, t.title, t.price, t.user_id AS seller_id, t.version AS ticket_version
FROM orders o JOIN tickets t ON t.id = o.ticket_id
"""
FIND_USER_ORDER = _ORDER_WITH_TICKET + "WHERE o.id = $1 AND o.user_id = $2"
LIST_USER_ORDERS = _ORDER_WITH_TICKET + "WHERE o.user_id = $1 ORDER BY o.created_at DESC, o.id DESC"

FIND_ORDER = "SELECT id, user_id, status, expires_at, version, ticket_id FROM orders WHERE id = $1"

# A compare-and-set: it changes nothing when the order moved on since it was read (the caller reads it again).
CHANGE_ORDER_STATUS = """
UPDATE orders SET status = $4, version = version + 1
WHERE id = $1 AND version = $2 AND status = $3
RETURNING id, user_id, status, expires_at, version, ticket_id
"""

INSERT_TICKETS = """
INSERT INTO tickets (id, title, price, user_id, version)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::uuid[], $5::int[])
ON CONFLICT (id) DO NOTHING
"""

# Copies locked first (FOR NO KEY UPDATE, in id order): replicas applying one ticket take turns, batches cannot
# deadlock, new orders of the ticket do not wait. "applied" runs unread; each event gets the version it met.
APPLY_TICKET_UPDATES = """
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::uuid[], $5::int[])
        AS i (id, title, price, user_id, version)
), copy AS (
    SELECT id, version FROM tickets WHERE id = ANY ($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
), applied AS (
    UPDATE tickets t SET title = i.title, price = i.price, user_id = i.user_id, version = i.version
    FROM incoming i JOIN copy c ON c.id = i.id AND c.version = i.version - 1
    WHERE t.id = i.id
)
SELECT i.id, i.version, c.version AS copy_version
FROM incoming i LEFT JOIN copy c ON c.id = i.id
"""

# The charge is claimed (inserted once per charge id) in the statement that reads its order, so a charge
# republished under a new event id, or handled by two replicas at once, acts exactly once.
CLAIM_CHARGE = """
WITH ordered AS (
    SELECT id, user_id, status, expires_at, version, ticket_id FROM orders WHERE id = $2
), claimed AS (
    INSERT INTO charges (id, order_id, stripe_id, amount, currency)
    SELECT $1, ordered.id, $3, $4, $5 FROM ordered
    ON CONFLICT (id) DO NOTHING
    RETURNING id, stripe_id, amount, currency, refund_reason, received_at
)
SELECT ordered.*, claimed.id AS charge_id, claimed.stripe_id, claimed.amount, claimed.currency,
       claimed.refund_reason, claimed.received_at
FROM ordered LEFT JOIN claimed ON true
"""

SET_REFUND_REASON = "UPDATE charges SET refund_reason = $2 WHERE id = $1"


async def find_ticket_for_order(db: Executor, ticket_id: uuid.UUID) -> TicketAvailability:
    row = await db.fetchrow(FIND_TICKET_FOR_ORDER, ticket_id)
    return TicketAvailability(ticket=None, held=False) if row is None else TicketAvailability(_ticket(row), row["held"])


async def insert_order(
    db: Executor, *, order_id: uuid.UUID, user_id: uuid.UUID, ticket_id: uuid.UUID, expires_at: datetime
) -> OrderAttempt:
    row = await db.fetchrow(INSERT_ORDER, order_id, ticket_id, user_id, expires_at)
    if row is None:
        return OrderAttempt(ticket=None, inserted=False)
    return OrderAttempt(ticket=_ticket(row), inserted=row["inserted"])


async def find_user_order(db: Executor, *, order_id: uuid.UUID, user_id: uuid.UUID) -> OrderWithTicket | None:
    row = await db.fetchrow(FIND_USER_ORDER, order_id, user_id)
    return None if row is None else _order_with_ticket(row)


async def list_user_orders(db: Executor, *, user_id: uuid.UUID) -> list[OrderWithTicket]:
    return [_order_with_ticket(row) for row in await db.fetch(LIST_USER_ORDERS, user_id)]


async def find_order(db: Executor, order_id: uuid.UUID) -> Order | None:
    row = await db.fetchrow(FIND_ORDER, order_id)
    return None if row is None else _order(row)


async def change_order_status(db: Executor, order: Order, status: OrderStatus) -> Order | None:
    """Move ``order`` to ``status`` (version + 1) if it is still at the version and status read; None if not."""
    row = await db.fetchrow(CHANGE_ORDER_STATUS, order.id, order.version, order.status.value, status.value)
    return None if row is None else _order(row)


async def insert_tickets(db: Executor, events: Sequence[TicketCreated]) -> None:
    """Insert the copies of tickets not copied yet."""
    await db.execute(
        INSERT_TICKETS,
        [e.id for e in events],
        [e.title for e in events],
        [e.price for e in events],
        [e.user_id for e in events],
        [e.version for e in events],
    )


async def apply_ticket_updates(db: Executor, events: Sequence[TicketUpdated]) -> list[TicketUpdateOutcome]:
    """Apply each update that is its copy's next version; at most one event per (ticket, version)."""
    rows = await db.fetch(
        APPLY_TICKET_UPDATES,
        [e.id for e in events],
        [e.title for e in events],
        [e.price for e in events],
        [e.user_id for e in events],
        [e.version for e in events],
    )
    return [TicketUpdateOutcome(row["id"], row["version"], row["copy_version"]) for row in rows]


async def claim_charge(db: Executor, charge: ChargeCreated) -> ChargeClaim | None:
    """Record ``charge`` unless it already was, reading its order in the same statement; None when the order is
    unknown (nothing recorded)."""
    row = await db.fetchrow(CLAIM_CHARGE, charge.id, charge.order_id, charge.stripe_id, charge.amount, charge.currency)
    if row is None:
        return None
    claimed = None
    if row["charge_id"] is not None:
        claimed = Charge(
            id=row["charge_id"],
            order_id=row["id"],
            stripe_id=row["stripe_id"],
            amount=row["amount"],
            currency=row["currency"],
            refund_reason=row["refund_reason"],
            received_at=row["received_at"],
        )
    return ChargeClaim(order=_order(row), charge=claimed)


async def set_refund_reason(db: Executor, charge_id: uuid.UUID, reason: str) -> None:
    await db.execute(SET_REFUND_REASON, charge_id, reason)


def _ticket(row: asyncpg.Record) -> Ticket:
    return Ticket(id=row["id"], title=row["title"], price=row["price"], user_id=row["user_id"], version=row["version"])


def _order(row: asyncpg.Record) -> Order:
    return Order(
        id=row["id"],
        user_id=row["user_id"],
        status=OrderStatus(row["status"]),
        expires_at=row["expires_at"],
        version=row["version"],
        ticket_id=row["ticket_id"],
    )


def _order_with_ticket(row: asyncpg.Record) -> OrderWithTicket:
    return OrderWithTicket(
        id=row["id"],
        user_id=row["user_id"],
        status=OrderStatus(row["status"]),
        expires_at=row["expires_at"],
        version=row["version"],
        ticket=Ticket(
            id=row["ticket_id"],
            title=row["title"],
            price=row["price"],
            user_id=row["seller_id"],
            version=row["ticket_version"],
        ),
    )
