"""Every statement of the orders service, and the typed rows they return.

The tables are created by ``migrations/versions/`` (``0001_initial``, ``0002_events_and_admissions``); this module
is the only place that knows their columns. Each function runs one statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import asyncpg

from ticketing_common.db import NO_EVENTS, Executor, OutboxArguments, utcnow
from ticketing_common.events import (
    BuyerAdmitted,
    ChargeCreated,
    EventCreated,
    EventUpdated,
    OrderStatus,
    TicketCreated,
    TicketUpdated,
)


@dataclass(frozen=True)
class Ticket:
    """This service's copy of a ticket; ``version`` is the last version applied, ``user_id`` the seller,
    ``event_id`` the event it is sold for (None: a ticket of no event)."""

    id: uuid.UUID
    title: str
    price: Decimal
    user_id: uuid.UUID
    version: int
    event_id: uuid.UUID | None = None


@dataclass(frozen=True)
class EventCopy:
    """This service's copy of an event: what its sale needs (``version``: the last version applied)."""

    id: uuid.UUID
    on_sale_at: datetime
    max_per_buyer: int
    waiting_room: bool
    version: int


@dataclass(frozen=True)
class EventSale:
    """What a buyer finds about the sale of a ticket's event: the event's copy (None: the ticket has no event, or
    its copy has not arrived), the end of the buyer's latest admission to it (None: never admitted), and how many
    of its tickets the buyer holds (an order created and not expired) or bought (complete)."""

    event: EventCopy | None = None
    admitted_until: datetime | None = None
    holds: int = 0


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
    """A ticket as a buyer finds it: the copy (None when there is no such ticket), whether an active order
    holds it now, and its event's sale as this buyer finds it."""

    ticket: Ticket | None
    held: bool
    sale: EventSale = field(default_factory=EventSale)


@dataclass(frozen=True)
class OrderAttempt:
    """What placing an order found: the ticket (None when the copy has no such ticket), whether the order
    was inserted (False: the buyer is the seller, the event's sale refuses them, the ticket's event is not the
    one expected, or an active order holds the ticket), and its event's sale as the statement found it."""

    ticket: Ticket | None
    inserted: bool
    sale: EventSale = field(default_factory=EventSale)


@dataclass(frozen=True)
class TicketUpdateOutcome:
    """One ``ticket.updated`` as the statement met it: the copy's version before (None: no copy)."""

    ticket_id: uuid.UUID
    version: int
    copy_version: int | None


@dataclass(frozen=True)
class EventUpdateOutcome:
    """One ``event.updated`` as the statement met it: the copy's version before (None: no copy)."""

    event_id: uuid.UUID
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


# An active order is one in created or complete (the predicate of uq_orders_active_ticket). With the ticket: its
# event's copy, the buyer's admission to that event, and the buyer's tickets of that event held (created, not
# expired at $3) or bought (complete), counted only when the event is known. A ticket of no event joins nothing.
FIND_TICKET_FOR_ORDER = """
SELECT t.id, t.title, t.price, t.user_id, t.version, t.event_id,
       e.id AS event_copy_id, e.on_sale_at, e.max_per_buyer, e.waiting_room, e.version AS event_version,
       a.admitted_until,
       CASE WHEN e.id IS NULL THEN 0 ELSE (
           SELECT count(*) FROM orders o JOIN tickets ot ON ot.id = o.ticket_id
           WHERE o.user_id = $2 AND ot.event_id = t.event_id
             AND (o.status = 'complete' OR (o.status = 'created' AND o.expires_at > $3))
       ) END AS holds,
       EXISTS (
           SELECT FROM orders WHERE ticket_id = $1 AND status IN ('created', 'complete')
       ) AS held
FROM tickets t
LEFT JOIN events e ON e.id = t.event_id
LEFT JOIN admissions a ON a.event_id = t.event_id AND a.user_id = $2
WHERE t.id = $1
"""

# Taken before INSERT_ORDER, in its transaction, for a ticket of an event: one buyer's orders of one event are
# placed one at a time (on every replica), and INSERT_ORDER, a later statement, counts what the previous one
# committed. Released by the commit or rollback.
LOCK_BUYER_AT_EVENT = "SELECT pg_advisory_xact_lock($1)"

# Reads the ticket (with what FIND_TICKET_FOR_ORDER reads) and inserts the order unless the buyer is the seller,
# the ticket's event is not $6 (the one whose lock is held; NULL: none), its version is not $7 (the one the
# caller's event was made from; NULL: any), or, for a ticket of an event, the event's copy is missing, its sale
# has not opened at $5, the buyer is not admitted at $5 to a waiting room, or holds max_per_buyer of its tickets
# already (the rules of domain.orderable_ticket, which reads the result). ON CONFLICT on uq_orders_active_ticket
# answers "reserved" in the result (after waiting for a concurrent insert's outcome) instead of raising. With
# the order, and only with it, the outbox rows $8..$11 (UnitOfWork.outbox_arguments) are written.
INSERT_ORDER = """
WITH ticket AS (
    SELECT t.id, t.title, t.price, t.user_id, t.version, t.event_id,
           e.id AS event_copy_id, e.on_sale_at, e.max_per_buyer, e.waiting_room, e.version AS event_version,
           a.admitted_until,
           CASE WHEN e.id IS NULL THEN 0 ELSE (
               SELECT count(*) FROM orders o JOIN tickets ot ON ot.id = o.ticket_id
               WHERE o.user_id = $3 AND ot.event_id = t.event_id
                 AND (o.status = 'complete' OR (o.status = 'created' AND o.expires_at > $5))
           ) END AS holds
    FROM tickets t
    LEFT JOIN events e ON e.id = t.event_id
    LEFT JOIN admissions a ON a.event_id = t.event_id AND a.user_id = $3
    WHERE t.id = $2
), inserted AS (
    INSERT INTO orders (id, user_id, status, expires_at, version, ticket_id)
    SELECT $1, $3, 'created', $4, 0, ticket.id FROM ticket
    WHERE ticket.user_id <> $3
      AND ticket.event_id IS NOT DISTINCT FROM $6
      AND ($7::integer IS NULL OR ticket.version = $7)
      AND (ticket.event_id IS NULL OR (
          ticket.on_sale_at <= $5
          AND (NOT ticket.waiting_room OR ticket.admitted_until > $5)
          AND ticket.holds < ticket.max_per_buyer
      ))
    ON CONFLICT (ticket_id) WHERE status IN ('created', 'complete') DO NOTHING
    RETURNING id
), outbox_rows AS (
    INSERT INTO outbox (event_id, subject, payload, headers)
    SELECT * FROM unnest($8::uuid[], $9::text[], $10::jsonb[], $11::jsonb[])
    WHERE EXISTS (SELECT FROM inserted)
)
SELECT ticket.*, EXISTS (SELECT FROM inserted) AS inserted
FROM ticket
"""

_ORDER_WITH_TICKET = """
SELECT o.id, o.user_id, o.status, o.expires_at, o.version,
       t.id AS ticket_id, t.title, t.price, t.user_id AS seller_id, t.version AS ticket_version,
       t.event_id AS ticket_event_id
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
INSERT INTO tickets (id, title, price, user_id, version, event_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::uuid[], $5::int[], $6::uuid[])
ON CONFLICT (id) DO NOTHING
"""

# Copies locked first (FOR NO KEY UPDATE, in id order): replicas applying one ticket take turns, batches cannot
# deadlock, new orders of the ticket do not wait. "applied" runs unread; each event gets the version it met.
APPLY_TICKET_UPDATES = """
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::uuid[], $5::int[], $6::uuid[])
        AS i (id, title, price, user_id, version, event_id)
), copy AS (
    SELECT id, version FROM tickets WHERE id = ANY ($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
), applied AS (
    UPDATE tickets t
    SET title = i.title, price = i.price, user_id = i.user_id, version = i.version, event_id = i.event_id
    FROM incoming i JOIN copy c ON c.id = i.id AND c.version = i.version - 1
    WHERE t.id = i.id
)
SELECT i.id, i.version, c.version AS copy_version
FROM incoming i LEFT JOIN copy c ON c.id = i.id
"""

INSERT_EVENTS = """
INSERT INTO events (id, on_sale_at, max_per_buyer, waiting_room, version)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::bool[], $5::int[])
ON CONFLICT (id) DO NOTHING
"""

# As APPLY_TICKET_UPDATES: copies locked in id order, each update applied on top of its predecessor only.
APPLY_EVENT_UPDATES = """
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::bool[], $5::int[])
        AS i (id, on_sale_at, max_per_buyer, waiting_room, version)
), copy AS (
    SELECT id, version FROM events WHERE id = ANY ($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
), applied AS (
    UPDATE events e
    SET on_sale_at = i.on_sale_at, max_per_buyer = i.max_per_buyer, waiting_room = i.waiting_room,
        version = i.version
    FROM incoming i JOIN copy c ON c.id = i.id AND c.version = i.version - 1
    WHERE e.id = i.id
)
SELECT i.id, i.version, c.version AS copy_version
FROM incoming i LEFT JOIN copy c ON c.id = i.id
"""

# One row per (event, buyer), at most once per statement (the caller keeps each pair's latest); the latest
# admitted_until wins, so a repeated or late admission changes nothing.
ADMIT_BUYERS = """
INSERT INTO admissions (event_id, user_id, admitted_until)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[])
ON CONFLICT (event_id, user_id) DO UPDATE SET admitted_until = EXCLUDED.admitted_until
WHERE admissions.admitted_until < EXCLUDED.admitted_until
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


async def find_ticket_for_order(
    db: Executor, ticket_id: uuid.UUID, *, buyer: uuid.UUID, now: datetime
) -> TicketAvailability:
    row = await db.fetchrow(FIND_TICKET_FOR_ORDER, ticket_id, buyer, now)
    if row is None:
        return TicketAvailability(ticket=None, held=False)
    return TicketAvailability(_ticket(row), row["held"], _sale(row))


async def lock_buyer_at_event(db: Executor, key: int) -> None:
    """Wait for, then hold until the transaction ends, the lock of one buyer's orders of one event."""
    await db.execute(LOCK_BUYER_AT_EVENT, key)


async def insert_order(
    db: Executor,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    ticket_id: uuid.UUID,
    expires_at: datetime,
    now: datetime | None = None,
    event_id: uuid.UUID | None = None,
    version: int | None = None,
    events: OutboxArguments = NO_EVENTS,
) -> OrderAttempt:
    """Place the order if the rules allow it at ``now`` (default: the current time) and write ``events`` with
    it; ``event_id`` is the event the caller expects the ticket to be of (None: of no event), whose lock it
    holds, ``version`` the ticket's version its ``events`` were made from (None: any)."""
    row = await db.fetchrow(
        INSERT_ORDER, order_id, ticket_id, user_id, expires_at, now or utcnow(), event_id, version, *events
    )
    if row is None:
        return OrderAttempt(ticket=None, inserted=False)
    return OrderAttempt(ticket=_ticket(row), inserted=row["inserted"], sale=_sale(row))


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
        [e.event_id for e in events],
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
        [e.event_id for e in events],
    )
    return [TicketUpdateOutcome(row["id"], row["version"], row["copy_version"]) for row in rows]


async def insert_events(db: Executor, events: Sequence[EventCreated]) -> None:
    """Insert the copies of events not copied yet."""
    await db.execute(
        INSERT_EVENTS,
        [e.id for e in events],
        [e.on_sale_at for e in events],
        [e.max_per_buyer for e in events],
        [e.waiting_room for e in events],
        [e.version for e in events],
    )


async def apply_event_updates(db: Executor, events: Sequence[EventUpdated]) -> list[EventUpdateOutcome]:
    """Apply each update that is its copy's next version; at most one event per (event, version)."""
    rows = await db.fetch(
        APPLY_EVENT_UPDATES,
        [e.id for e in events],
        [e.on_sale_at for e in events],
        [e.max_per_buyer for e in events],
        [e.waiting_room for e in events],
        [e.version for e in events],
    )
    return [EventUpdateOutcome(row["id"], row["version"], row["copy_version"]) for row in rows]


async def admit_buyers(db: Executor, admissions: Sequence[BuyerAdmitted]) -> None:
    """Record each admission unless a later one of the same buyer to the same event is; one per pair."""
    await db.execute(
        ADMIT_BUYERS,
        [a.event_id for a in admissions],
        [a.user_id for a in admissions],
        [a.admitted_until for a in admissions],
    )


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
    return Ticket(
        id=row["id"],
        title=row["title"],
        price=row["price"],
        user_id=row["user_id"],
        version=row["version"],
        event_id=row["event_id"],
    )


def _sale(row: asyncpg.Record) -> EventSale:
    if row["event_copy_id"] is None:
        return EventSale(admitted_until=row["admitted_until"])
    event = EventCopy(
        id=row["event_copy_id"],
        on_sale_at=row["on_sale_at"],
        max_per_buyer=row["max_per_buyer"],
        waiting_room=row["waiting_room"],
        version=row["event_version"],
    )
    return EventSale(event=event, admitted_until=row["admitted_until"], holds=row["holds"])


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
            event_id=row["ticket_event_id"],
        ),
    )
