"""Every statement of the tickets service, and the typed rows they return.

The tables are created by ``migrations/versions/`` (0001: tickets, 0002: events and ``tickets.event_id``); this
module is the only place that knows their columns. Every change of a ticket is one conditional ``UPDATE`` that bumps ``version`` and returns the new
row, from which the service builds its ``ticket.updated``; the statement's result, not a read before it, decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from ticketing_common.db import Executor

# Qualified, so the same list serves statements that join the table with their own inputs.
TICKET_COLUMNS = (
    "tickets.id, tickets.title, tickets.price, tickets.user_id, tickets.order_id, tickets.version, tickets.created_at, "
    "tickets.event_id"
)


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket for sale. ``order_id`` is set while an order holds it; ``version`` counts every change;
    ``event_id`` is the event it is for (None: none), chosen at creation."""

    id: uuid.UUID
    title: str
    price: Decimal
    user_id: uuid.UUID
    order_id: uuid.UUID | None
    version: int
    created_at: datetime
    event_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """What an edit statement found when it started (owner, holder, version) and the ticket it wrote: None
    when the ticket was not editable as asked, or changed while the statement waited for it."""

    user_id: uuid.UUID
    order_id: uuid.UUID | None
    version: int
    written: Ticket | None


@dataclass(frozen=True, slots=True)
class Hold:
    """The outcome of one ``order.created`` in :func:`hold_tickets`: the ticket it now holds, or None; and
    whether the order was cancelled already (a tombstone), which is why it holds nothing."""

    ticket_id: uuid.UUID
    cancelled: bool
    held: Ticket | None


def _ticket(row: asyncpg.Record) -> Ticket:
    return Ticket(
        id=row["id"],
        title=row["title"],
        price=row["price"],
        user_id=row["user_id"],
        order_id=row["order_id"],
        version=row["version"],
        created_at=row["created_at"],
        event_id=row["event_id"],
    )


INSERT_TICKET = f"""
INSERT INTO tickets (id, title, price, user_id, event_id) VALUES ($1, $2, $3, $4, $5)
RETURNING {TICKET_COLUMNS}
"""  # noqa: S608 (a constant column list)


async def insert_ticket(
    db: Executor,
    *,
    ticket_id: uuid.UUID,
    title: str,
    price: Decimal,
    user_id: uuid.UUID,
    event_id: uuid.UUID | None = None,
) -> Ticket:
    """A new ticket, at version 0 and held by no order."""
    row = await db.fetchrow(INSERT_TICKET, ticket_id, title, price, user_id, event_id)
    assert row is not None
    return _ticket(row)


# Many tickets of one event in one statement: one row per number of the series, each with its own id.
INSERT_EVENT_TICKETS = f"""
INSERT INTO tickets (id, title, price, user_id, event_id)
SELECT gen_random_uuid(), $2, $3, $4, $1 FROM generate_series(1, $5)
RETURNING {TICKET_COLUMNS}
"""  # noqa: S608 (a constant column list)


async def insert_event_tickets(
    db: asyncpg.Connection, *, event_id: uuid.UUID, title: str, price: Decimal, user_id: uuid.UUID, count: int
) -> list[Ticket]:
    """``count`` new tickets of the event, alike but for their ids, at version 0 and held by no order."""
    return [_ticket(row) for row in await db.fetch(INSERT_EVENT_TICKETS, event_id, title, price, user_id, count)]


FIND_TICKET = f"SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1"  # noqa: S608 (a constant column list)


async def find_ticket(db: Executor, ticket_id: uuid.UUID) -> Ticket | None:
    row = await db.fetchrow(FIND_TICKET, ticket_id)
    return _ticket(row) if row is not None else None


# The public listing, on the partial index ix_tickets_available (created_at DESC, id DESC) WHERE order_id IS NULL.
# Two statements rather than one with an optional cursor: each keeps a plan that walks the index.
LIST_AVAILABLE = f"""
SELECT {TICKET_COLUMNS} FROM tickets
WHERE order_id IS NULL
ORDER BY created_at DESC, id DESC
LIMIT $1
"""  # noqa: S608 (a constant column list)
LIST_AVAILABLE_AFTER = f"""
SELECT {TICKET_COLUMNS} FROM tickets
WHERE order_id IS NULL AND (created_at, id) < ($2, $3)
ORDER BY created_at DESC, id DESC
LIMIT $1
"""  # noqa: S608 (a constant column list)


# The same listing within one event, on ix_tickets_event_available (event_id, created_at DESC, id DESC).
LIST_AVAILABLE_OF_EVENT = f"""
SELECT {TICKET_COLUMNS} FROM tickets
WHERE event_id = $2 AND order_id IS NULL
ORDER BY created_at DESC, id DESC
LIMIT $1
"""  # noqa: S608 (a constant column list)
LIST_AVAILABLE_OF_EVENT_AFTER = f"""
SELECT {TICKET_COLUMNS} FROM tickets
WHERE event_id = $2 AND order_id IS NULL AND (created_at, id) < ($3, $4)
ORDER BY created_at DESC, id DESC
LIMIT $1
"""  # noqa: S608 (a constant column list)


async def list_available(
    db: Executor,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
    event_id: uuid.UUID | None = None,
) -> list[Ticket]:
    """Up to ``limit`` tickets no order holds (of ``event_id`` alone, when given), newest first, strictly after
    ``after`` (created_at, id)."""
    if event_id is None:
        if after is None:
            rows = await db.fetch(LIST_AVAILABLE, limit)
        else:
            rows = await db.fetch(LIST_AVAILABLE_AFTER, limit, *after)
    elif after is None:
        rows = await db.fetch(LIST_AVAILABLE_OF_EVENT, limit, event_id)
    else:
        rows = await db.fetch(LIST_AVAILABLE_OF_EVENT_AFTER, limit, event_id, *after)
    return [_ticket(row) for row in rows]


# `seen` is the row as the statement's snapshot has it, for the answer when nothing is written. The UPDATE
# checks its conditions on the newest row: if a concurrent writer holds it, the UPDATE waits for its commit
# and then applies on top of it, or writes nothing when the row is no longer editable as asked.
EDIT_TICKET = f"""
WITH seen AS (
    SELECT user_id, order_id, version FROM tickets WHERE id = $1
), edited AS (
    UPDATE tickets SET title = $3, price = $4, version = version + 1
    WHERE id = $1 AND user_id = $2 AND order_id IS NULL AND ($5::integer IS NULL OR version = $5)
    RETURNING {TICKET_COLUMNS}
)
SELECT seen.user_id AS seen_user_id, seen.order_id AS seen_order_id, seen.version AS seen_version, edited.*
FROM seen LEFT JOIN edited ON true
"""  # noqa: S608 (a constant column list)


async def edit_ticket(
    db: Executor,
    *,
    ticket_id: uuid.UUID,
    user_id: uuid.UUID,
    title: str,
    price: Decimal,
    expected_version: int | None,
) -> Edit | None:
    """Set title and price (version + 1) if ``user_id`` owns the ticket, no order holds it and, when given,
    it is at ``expected_version``. None when there is no such ticket."""
    row = await db.fetchrow(EDIT_TICKET, ticket_id, user_id, title, price, expected_version)
    if row is None:
        return None
    return Edit(
        user_id=row["seen_user_id"],
        order_id=row["seen_order_id"],
        version=row["seen_version"],
        written=_ticket(row) if row["id"] is not None else None,
    )


# Both order listeners lock their tickets first, in one order (by id) so that batches never deadlock. The
# statements after it then see every change committed before the lock was granted.
LOCK_TICKETS = "SELECT id, order_id FROM tickets WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"


async def lock_tickets(db: asyncpg.Connection, ticket_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID | None]:
    """Lock the tickets' rows until the transaction ends; returns the order holding each (None: free).
    Unknown tickets are missing from the result."""
    return {row["id"]: row["order_id"] for row in await db.fetch(LOCK_TICKETS, ticket_ids)}


HOLD_TICKETS = f"""
WITH wanted AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS w(ticket_id, order_id, position)
), judged AS (
    SELECT wanted.*, EXISTS (SELECT FROM cancelled_orders c WHERE c.order_id = wanted.order_id) AS cancelled
    FROM wanted
), held AS (
    UPDATE tickets SET order_id = judged.order_id, version = tickets.version + 1
    FROM judged
    WHERE tickets.id = judged.ticket_id AND tickets.order_id IS NULL AND NOT judged.cancelled
    RETURNING {TICKET_COLUMNS}
)
SELECT judged.ticket_id AS wanted_ticket_id, judged.cancelled, held.*
FROM judged LEFT JOIN held ON held.id = judged.ticket_id
ORDER BY judged.position
"""  # noqa: S608 (a constant column list)


async def hold_tickets(db: asyncpg.Connection, holds: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> list[Hold]:
    """For each ``(order_id, ticket_id)`` (distinct tickets, locked by :func:`lock_tickets`): the order holds
    the ticket (version + 1) if the ticket is free and the order was not cancelled. In the given order."""
    rows = await db.fetch(HOLD_TICKETS, [t for _, t in holds], [o for o, _ in holds])
    return [
        Hold(
            ticket_id=row["wanted_ticket_id"],
            cancelled=row["cancelled"],
            held=_ticket(row) if row["id"] is not None else None,
        )
        for row in rows
    ]


# The tombstones make a later order.created of these orders change nothing (see hold_tickets).
RELEASE_TICKETS = f"""
WITH cancelled AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS c(order_id, ticket_id, position)
), remembered AS (
    INSERT INTO cancelled_orders (order_id)
    SELECT order_id FROM cancelled ORDER BY position
    ON CONFLICT (order_id) DO NOTHING
)
UPDATE tickets SET order_id = NULL, version = tickets.version + 1
FROM cancelled
WHERE tickets.id = cancelled.ticket_id AND tickets.order_id = cancelled.order_id
RETURNING {TICKET_COLUMNS}, cancelled.position
"""  # noqa: S608 (a constant column list)


async def release_tickets(db: asyncpg.Connection, releases: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> list[Ticket]:
    """For each ``(order_id, ticket_id)`` (distinct tickets, locked by :func:`lock_tickets`): remember the
    order as cancelled and free the ticket (version + 1) if this order holds it. Returns the freed tickets,
    in the given order."""
    rows = await db.fetch(RELEASE_TICKETS, [o for o, _ in releases], [t for _, t in releases])
    return [_ticket(row) for row in sorted(rows, key=lambda row: row["position"])]


# -- events ------------------------------------------------------------------------------------------------------

EVENT_COLUMNS = (
    "events.id, events.name, events.venue, events.starts_at, events.on_sale_at, events.max_per_buyer, "
    "events.waiting_room, events.user_id, events.version, events.created_at"
)


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event (a show tickets are sold for; "row" tells it from the events of the bus). ``waiting_room`` is
    decided at creation and never changes; ``version`` counts every change."""

    id: uuid.UUID
    name: str
    venue: str
    starts_at: datetime
    on_sale_at: datetime
    max_per_buyer: int
    waiting_room: bool
    user_id: uuid.UUID
    version: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TicketCounts:
    """An event's tickets: ``available`` held by no order, ``reserved`` held by one (paid ones included: this
    service is not told when an order is paid, and a paid order keeps its ticket)."""

    available: int
    reserved: int


@dataclass(frozen=True, slots=True)
class EventEdit:
    """What an edit statement found when it started (owner, version) and the event it wrote: None when the
    event was not editable as asked, or changed while the statement waited for it."""

    user_id: uuid.UUID
    version: int
    written: EventRow | None


def _event(row: asyncpg.Record) -> EventRow:
    return EventRow(
        id=row["id"],
        name=row["name"],
        venue=row["venue"],
        starts_at=row["starts_at"],
        on_sale_at=row["on_sale_at"],
        max_per_buyer=row["max_per_buyer"],
        waiting_room=row["waiting_room"],
        user_id=row["user_id"],
        version=row["version"],
        created_at=row["created_at"],
    )


INSERT_EVENT = f"""
INSERT INTO events (id, name, venue, starts_at, on_sale_at, max_per_buyer, waiting_room, user_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {EVENT_COLUMNS}
"""  # noqa: S608 (a constant column list)


async def insert_event(
    db: Executor,
    *,
    event_id: uuid.UUID,
    name: str,
    venue: str,
    starts_at: datetime,
    on_sale_at: datetime,
    max_per_buyer: int,
    waiting_room: bool,
    user_id: uuid.UUID,
    created_at: datetime,
) -> EventRow:
    """A new event at version 0; ``created_at`` is the moment its waiting room was decided at."""
    row = await db.fetchrow(
        INSERT_EVENT, event_id, name, venue, starts_at, on_sale_at, max_per_buyer, waiting_room, user_id, created_at
    )
    assert row is not None
    return _event(row)


FIND_EVENT = f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"  # noqa: S608 (a constant column list)


async def find_event(db: Executor, event_id: uuid.UUID) -> EventRow | None:
    row = await db.fetchrow(FIND_EVENT, event_id)
    return _event(row) if row is not None else None


# The counts read ix_tickets_event (every ticket of the event); one statement, so both come from one snapshot.
FIND_EVENT_WITH_COUNTS = f"""
SELECT {EVENT_COLUMNS},
       counts.available, counts.reserved
FROM events
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE tickets.order_id IS NULL) AS available,
           count(*) FILTER (WHERE tickets.order_id IS NOT NULL) AS reserved
    FROM tickets WHERE tickets.event_id = events.id
) AS counts
WHERE events.id = $1
"""  # noqa: S608 (a constant column list)


async def find_event_with_counts(db: Executor, event_id: uuid.UUID) -> tuple[EventRow, TicketCounts] | None:
    """The event and how many of its tickets are available and reserved; None when there is no such event."""
    row = await db.fetchrow(FIND_EVENT_WITH_COUNTS, event_id)
    if row is None:
        return None
    return _event(row), TicketCounts(available=row["available"], reserved=row["reserved"])


# The listing: events not started yet (by the database's clock), soonest first, on ix_events_upcoming
# (starts_at, id). Two statements rather than one with an optional cursor: each keeps a plan that walks the index.
#
# A search adds name or venue ILIKE '%q%', which only the trigram indexes serve well for a rare q; for a common
# one, walking ix_events_upcoming until a page is full is cheaper. Only a plan made for the actual pattern can
# tell: a generic plan of a prepared statement (PostgreSQL's choice after five executions) knows no pattern and
# walks ix_events_upcoming, reading every upcoming event for a q that matches few. So searches run with
# plan_cache_mode = force_custom_plan (SET LOCAL, in their own read-only transaction): planning costs a fraction
# of a millisecond. A q of one or two characters has no trigram to look up: it reads upcoming events in order
# until a page is full, at worst all of them.
_UPCOMING = f"SELECT {EVENT_COLUMNS} FROM events WHERE starts_at > now()"  # noqa: S608 (a constant column list)
_AFTER = " AND (starts_at, id) > ($2, $3)"
_MATCHING = " AND (name ILIKE $4 ESCAPE '\\' OR venue ILIKE $4 ESCAPE '\\')"
_PAGE = " ORDER BY starts_at, id LIMIT $1"
LIST_EVENTS = _UPCOMING + _PAGE
LIST_EVENTS_AFTER = _UPCOMING + _AFTER + _PAGE
SEARCH_EVENTS = _UPCOMING + _MATCHING.replace("$4", "$2") + _PAGE
SEARCH_EVENTS_AFTER = _UPCOMING + _AFTER + _MATCHING + _PAGE


SEARCH_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"


async def list_upcoming_events(
    pool: asyncpg.Pool, *, limit: int, after: tuple[datetime, uuid.UUID] | None = None, pattern: str | None = None
) -> list[EventRow]:
    """Up to ``limit`` events that have not started, soonest first, strictly after ``after`` (starts_at, id);
    with ``pattern``, only those whose name or venue matches it (``ILIKE``, backslash escapes)."""
    if pattern is None:
        if after is None:
            rows = await pool.fetch(LIST_EVENTS, limit)
        else:
            rows = await pool.fetch(LIST_EVENTS_AFTER, limit, *after)
        return [_event(row) for row in rows]
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(SEARCH_PLANS)
        if after is None:
            rows = await conn.fetch(SEARCH_EVENTS, limit, pattern)
        else:
            rows = await conn.fetch(SEARCH_EVENTS_AFTER, limit, *after, pattern)
    return [_event(row) for row in rows]


# As EDIT_TICKET: `seen` is the row as the statement's snapshot has it, for the answer when nothing is written;
# the UPDATE checks its conditions on the newest row (after waiting for a concurrent writer's commit). The
# waiting room is not among the columns set: it never changes.
EDIT_EVENT = f"""
WITH seen AS (
    SELECT user_id, version FROM events WHERE id = $1
), edited AS (
    UPDATE events SET name = $3, venue = $4, starts_at = $5, on_sale_at = $6, max_per_buyer = $7,
                      version = version + 1
    WHERE id = $1 AND user_id = $2 AND ($8::integer IS NULL OR version = $8)
    RETURNING {EVENT_COLUMNS}
)
SELECT seen.user_id AS seen_user_id, seen.version AS seen_version, edited.*
FROM seen LEFT JOIN edited ON true
"""  # noqa: S608 (a constant column list)


async def edit_event(
    db: Executor,
    *,
    event_id: uuid.UUID,
    user_id: uuid.UUID,
    name: str,
    venue: str,
    starts_at: datetime,
    on_sale_at: datetime,
    max_per_buyer: int,
    expected_version: int | None,
) -> EventEdit | None:
    """Replace the event's fields (version + 1) if ``user_id`` owns it and, when given, it is at
    ``expected_version``. None when there is no such event."""
    row = await db.fetchrow(
        EDIT_EVENT, event_id, user_id, name, venue, starts_at, on_sale_at, max_per_buyer, expected_version
    )
    if row is None:
        return None
    return EventEdit(
        user_id=row["seen_user_id"],
        version=row["seen_version"],
        written=_event(row) if row["id"] is not None else None,
    )
