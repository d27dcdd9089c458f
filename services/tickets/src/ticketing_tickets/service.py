"""Use cases of the tickets service: tickets, and the events (shows) they are sold for.

Every change of a ticket or an event is one conditional ``UPDATE`` (``queries.py``) that bumps the version and
returns the new row, and publishes ``ticket.updated`` / ``event.updated`` with that row in the same unit of work.
A write based on a stale state therefore writes nothing instead of overwriting a newer one, and the versions on
the bus form one chain (0, 1, 2, ...) however many requests and replicas race.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from ticketing_common.db import Database, UnitOfWork, new_id, utcnow
from ticketing_common.errors import (
    BadRequestError,
    ConflictError,
    CustomError,
    FieldError,
    ForbiddenError,
    NotFoundError,
)
from ticketing_common.events import EventCreated, EventUpdated, NotYet, TicketCreated, TicketUpdated
from ticketing_tickets import domain, queries
from ticketing_tickets.cache import TicketCache
from ticketing_tickets.pagination import Cursor
from ticketing_tickets.queries import Edit, EventRow, Hold, Ticket, TicketCounts
from ticketing_tickets.schemas import TicketOut

logger = logging.getLogger("ticketing.tickets")

RESERVED_MESSAGE = "Cannot edit a reserved ticket"
MODIFIED_MESSAGE = "Ticket was modified, reload and try again"
# Each failed attempt means another writer committed a change, so this bounds the wait, not the progress.
MAX_UPDATE_ATTEMPTS = 100

OrderOfTicket = tuple[uuid.UUID, uuid.UUID]
"""``(order_id, ticket_id)`` of an order event."""


class UnknownTicketError(Exception):
    """An order names a ticket this service never sold: bad data, retried then parked for a human."""


class NotInOneGo(Exception):
    """A batch of order events that the set-based path does not apply (a ticket or an order named twice, an
    unknown ticket): the listener runner rolls it back and replays its events one at a time."""


async def create_ticket(
    *, db: Database, user_id: uuid.UUID, title: str, price: Decimal, event_id: uuid.UUID | None = None
) -> Ticket:
    """Put a new ticket on sale (version 0) and publish ``ticket.created``. With ``event_id``, the ticket is for
    that event, which must exist (400 on ``eventId``) and be the caller's (403)."""
    async with db.unit_of_work() as uow:
        if event_id is not None:
            # Events are never deleted and never change owner: what this read finds still holds at the commit.
            event = await queries.find_event(uow.conn, event_id)
            if event is None:
                raise FieldError("eventId", domain.EVENT_NOT_FOUND_MESSAGE)
            domain.may_add_tickets(owner=event.user_id, user_id=user_id)
        ticket = await queries.insert_ticket(
            uow.conn, ticket_id=new_id(), title=title, price=price, user_id=user_id, event_id=event_id
        )
        uow.publish(_created(ticket))
    return ticket


async def show_ticket(*, db: Database, cache: TicketCache, ticket_id: uuid.UUID) -> bytes:
    """The ticket's JSON body, from this replica's read model when it has it (``cache.py``), else from the
    database (then kept); 404 when there is none."""
    if (body := cache.get(ticket_id)) is not None:
        return body
    epoch = cache.epoch  # before the read: a drop of the cache while it runs means the read may be stale
    ticket = await queries.find_ticket(db.pool, ticket_id)
    if ticket is None:
        raise NotFoundError()
    return cache.offer(TicketOut.model_validate(ticket), epoch=epoch)


async def list_available(
    *, db: Database, limit: int, after: Cursor | None = None, event_id: uuid.UUID | None = None
) -> tuple[Sequence[Ticket], Cursor | None]:
    """One page of the tickets no order holds (of one event, with ``event_id``: none for an unknown event),
    newest first, and the cursor of the next page (or None)."""
    rows = await queries.list_available(
        db.pool, limit=limit + 1, after=(after.at, after.id) if after is not None else None, event_id=event_id
    )
    page = rows[:limit]
    following = Cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, following


async def update_ticket(
    *,
    db: Database,
    ticket_id: uuid.UUID,
    user_id: uuid.UUID,
    title: str,
    price: Decimal,
    expected_version: int | None = None,
) -> Ticket:
    """Change the title and price of the caller's own unreserved ticket; publishes ``ticket.updated``.

    With ``expected_version`` the change applies only to that version (409 otherwise). Without it, an edit
    racing another one applies on top of the winner's change.
    """
    async with db.unit_of_work() as uow:
        for _ in range(MAX_UPDATE_ATTEMPTS):
            edit = await queries.edit_ticket(
                uow.conn,
                ticket_id=ticket_id,
                user_id=user_id,
                title=title,
                price=price,
                expected_version=expected_version,
            )
            if edit is None:
                raise NotFoundError()
            if edit.written is not None:
                _publish_updated(uow, edit.written)
                return edit.written
            if (refusal := why_not_edited(edit, user_id=user_id, expected_version=expected_version)) is not None:
                raise refusal
        raise ConflictError(MODIFIED_MESSAGE)


def why_not_edited(edit: Edit, *, user_id: uuid.UUID, expected_version: int | None) -> CustomError | None:
    """Why an edit that wrote nothing is refused, from what its statement found, in the API's order: 403 (not
    the owner), 400 (reserved), 409 (not the expected version). None when nothing refuses it: the row changed
    while the statement waited for it (a hold, or a version bump when one was expected), so the next statement
    sees that change and answers from it."""
    if edit.user_id != user_id:
        return ForbiddenError()
    if edit.order_id is not None:
        return BadRequestError(RESERVED_MESSAGE)
    if expected_version is not None and edit.version != expected_version:
        return ConflictError(MODIFIED_MESSAGE)
    return None


async def hold_for_order(*, uow: UnitOfWork, order_id: uuid.UUID, ticket_id: uuid.UUID) -> Ticket | None:
    """Apply ``order.created`` in ``uow``: the order holds the ticket from now on.

    Returns the changed ticket, or None when there is nothing to change (already held by this order, or the
    order was cancelled before its creation reached us). Raises :class:`NotYet` while another order holds
    the ticket (its cancellation is on its way) and :class:`UnknownTicketError` for a ticket we never had.
    """
    holders = await queries.lock_tickets(uow.conn, [ticket_id])
    if ticket_id not in holders:
        logger.error("order names an unknown ticket", extra={"order_id": str(order_id), "ticket_id": str(ticket_id)})
        raise UnknownTicketError(f"order {order_id} names unknown ticket {ticket_id}")
    if holders[ticket_id] == order_id:
        return None
    [hold] = await queries.hold_tickets(uow.conn, [(order_id, ticket_id)])
    return _apply_hold(uow, hold, order_id=order_id, holder=holders[ticket_id])


async def hold_for_orders(*, uow: UnitOfWork, orders: Sequence[OrderOfTicket]) -> list[Ticket]:
    """Apply several ``order.created`` in ``uow`` with two statements, exactly as one by one in this order;
    returns the changed tickets. A ticket named twice, an unknown ticket or one another order holds raises,
    so that the events are replayed one at a time, each to meet its own fate."""
    ticket_ids = distinct_tickets(orders)
    holders = await queries.lock_tickets(uow.conn, ticket_ids)
    if len(holders) != len(ticket_ids):
        raise NotInOneGo("an order names an unknown ticket")
    wanted = [(order_id, ticket_id) for order_id, ticket_id in orders if holders[ticket_id] != order_id]
    holds = await queries.hold_tickets(uow.conn, wanted) if wanted else []
    changed: list[Ticket] = []
    for (order_id, ticket_id), hold in zip(wanted, holds, strict=True):
        if (ticket := _apply_hold(uow, hold, order_id=order_id, holder=holders[ticket_id])) is not None:
            changed.append(ticket)
    return changed


def held_ticket(hold: Hold, *, holder: uuid.UUID | None) -> Ticket | None:
    """The ticket a hold changed, or None when its order had been cancelled already (nothing to hold). Raises
    :class:`NotYet` when it could not hold the ticket: ``holder``, another order, holds it (its cancellation is
    on its way), or the ticket changed under the row lock, which cannot happen, but then the event must be
    tried again, never acknowledged as applied."""
    if hold.held is not None:
        return hold.held
    if hold.cancelled:
        return None
    if holder is not None:
        raise NotYet(f"ticket {hold.ticket_id} is still held by order {holder}")
    raise NotYet(f"ticket {hold.ticket_id} changed while the event was applied")


def _apply_hold(uow: UnitOfWork, hold: Hold, *, order_id: uuid.UUID, holder: uuid.UUID | None) -> Ticket | None:
    ticket = held_ticket(hold, holder=holder)
    if ticket is not None:
        _publish_updated(uow, ticket)
    else:
        logger.info(
            "order was cancelled before its creation arrived; ticket stays free",
            extra={"order_id": str(order_id), "ticket_id": str(hold.ticket_id)},
        )
    return ticket


async def release_for_order(*, uow: UnitOfWork, order_id: uuid.UUID, ticket_id: uuid.UUID) -> Ticket | None:
    """Apply ``order.cancelled`` in ``uow``: free the ticket if this order holds it.

    Remembers the cancellation, so an ``order.created`` of the same order arriving later changes nothing.
    Returns the changed ticket, or None when this order did not hold it.
    """
    changed = await release_for_orders(uow=uow, orders=[(order_id, ticket_id)])
    return changed[0] if changed else None


async def release_for_orders(*, uow: UnitOfWork, orders: Sequence[OrderOfTicket]) -> list[Ticket]:
    """Apply several ``order.cancelled`` in ``uow`` with two statements, exactly as one by one in this order;
    returns the changed tickets. A ticket or an order named twice raises (replayed one at a time)."""
    ticket_ids = distinct_tickets(orders, each_order_once=True)
    holders = await queries.lock_tickets(uow.conn, ticket_ids)
    released = {ticket.id: ticket for ticket in await queries.release_tickets(uow.conn, orders)}
    changed: list[Ticket] = []
    for order_id, ticket_id in orders:
        if ticket_id not in holders:
            logger.warning("cancelled order names an unknown ticket", extra={"order_id": str(order_id)})
        elif holders[ticket_id] == order_id:
            if (ticket := released.get(ticket_id)) is None:
                raise NotYet(f"ticket {ticket_id} changed while the event was applied")  # as in held_ticket
            _publish_updated(uow, ticket)
            changed.append(ticket)
    return changed


def distinct_tickets(orders: Sequence[OrderOfTicket], *, each_order_once: bool = False) -> list[uuid.UUID]:
    """The tickets of a batch of order events, in order; :class:`NotInOneGo` when a ticket is named twice (a
    ticket changes at most once per statement) or, with ``each_order_once``, an order is."""
    ticket_ids = [ticket_id for _, ticket_id in orders]
    if len(set(ticket_ids)) != len(ticket_ids):
        raise NotInOneGo("a ticket is named twice in one batch")
    if each_order_once and len({order_id for order_id, _ in orders}) != len(orders):
        raise NotInOneGo("an order is named twice in one batch")
    return ticket_ids


def _created(ticket: Ticket) -> TicketCreated:
    return TicketCreated(
        id=ticket.id,
        title=ticket.title,
        price=ticket.price,
        user_id=ticket.user_id,
        version=ticket.version,
        event_id=ticket.event_id,
    )


def _publish_updated(uow: UnitOfWork, ticket: Ticket) -> None:
    uow.publish(
        TicketUpdated(
            id=ticket.id,
            title=ticket.title,
            price=ticket.price,
            user_id=ticket.user_id,
            order_id=ticket.order_id,
            version=ticket.version,
            event_id=ticket.event_id,
        )
    )


# -- events ------------------------------------------------------------------------------------------------------


async def create_event(
    *,
    db: Database,
    user_id: uuid.UUID,
    name: str,
    venue: str,
    starts_at: datetime,
    on_sale_at: datetime | None,
    max_per_buyer: int,
) -> EventRow:
    """Create an event (version 0) owned by the caller and publish ``event.created``. Its sale opens at
    ``on_sale_at``, by default now; its waiting room is decided here, once (``domain.waiting_room``)."""
    now = utcnow()
    planned = domain.schedule(starts_at=starts_at, on_sale_at=on_sale_at, now=now)
    async with db.unit_of_work() as uow:
        event = await queries.insert_event(
            uow.conn,
            event_id=new_id(),
            name=name,
            venue=venue,
            starts_at=planned.starts_at,
            on_sale_at=planned.on_sale_at,
            max_per_buyer=max_per_buyer,
            waiting_room=domain.waiting_room(on_sale_at=planned.on_sale_at, created_at=now),
            user_id=user_id,
            created_at=now,
        )
        uow.publish(EventCreated(**_event_payload(event)))
    return event


async def show_event(*, db: Database, event_id: uuid.UUID) -> tuple[EventRow, TicketCounts]:
    """The event and the counts of its tickets; 404 when there is none."""
    found = await queries.find_event_with_counts(db.pool, event_id)
    if found is None:
        raise NotFoundError()
    return found


async def list_upcoming_events(
    *, db: Database, limit: int, after: Cursor | None = None, search: str | None = None
) -> tuple[Sequence[EventRow], Cursor | None]:
    """One page of the events that have not started, soonest first (then by id), those whose name or venue
    contains ``search`` (any case) when given, and the cursor of the next page (or None)."""
    rows = await queries.list_upcoming_events(
        db.pool,
        limit=limit + 1,
        after=(after.at, after.id) if after is not None else None,
        pattern=domain.contains_pattern(search) if search is not None else None,
    )
    page = rows[:limit]
    following = Cursor(page[-1].starts_at, page[-1].id) if len(rows) > limit else None
    return page, following


async def update_event(
    *,
    db: Database,
    event_id: uuid.UUID,
    user_id: uuid.UUID,
    name: str,
    venue: str,
    starts_at: datetime,
    on_sale_at: datetime | None,
    max_per_buyer: int,
    expected_version: int | None = None,
) -> EventRow:
    """Replace the caller's own event (every field but its waiting room, which stays as decided at creation);
    publishes ``event.updated``. ``on_sale_at`` None: the sale opens now, as at creation. With
    ``expected_version`` the change applies only to that version (409 otherwise)."""
    planned = domain.schedule(starts_at=starts_at, on_sale_at=on_sale_at, now=utcnow())
    async with db.unit_of_work() as uow:
        for _ in range(MAX_UPDATE_ATTEMPTS):
            edit = await queries.edit_event(
                uow.conn,
                event_id=event_id,
                user_id=user_id,
                name=name,
                venue=venue,
                starts_at=planned.starts_at,
                on_sale_at=planned.on_sale_at,
                max_per_buyer=max_per_buyer,
                expected_version=expected_version,
            )
            if edit is None:
                raise NotFoundError()
            if edit.written is not None:
                uow.publish(EventUpdated(**_event_payload(edit.written)))
                return edit.written
            refusal = domain.why_event_not_edited(edit, user_id=user_id, expected_version=expected_version)
            if refusal is not None:
                raise refusal
        raise ConflictError(domain.EVENT_MODIFIED_MESSAGE)


async def create_event_tickets(
    *, db: Database, event_id: uuid.UUID, user_id: uuid.UUID, count: int, price: Decimal, title: str | None
) -> int:
    """Put ``count`` tickets of the caller's own event on sale at once (title: the event's name by default),
    each with its own ``ticket.created``: one unit of work, so all of them or none. 404 for an unknown event,
    403 for another user's. Returns how many were created.

    One ``INSERT ... SELECT ... generate_series`` writes the tickets; the unit of work writes their events to the
    outbox in one statement too (``UnitOfWork.write_outbox`` over arrays).
    """
    async with db.unit_of_work() as uow:
        event = await queries.find_event(uow.conn, event_id)
        if event is None:
            raise NotFoundError()
        domain.may_add_tickets(owner=event.user_id, user_id=user_id)
        tickets = await queries.insert_event_tickets(
            uow.conn, event_id=event_id, title=title or event.name, price=price, user_id=user_id, count=count
        )
        for ticket in tickets:
            uow.publish(_created(ticket))
    return len(tickets)


def _event_payload(event: EventRow) -> dict[str, Any]:
    """The fields of ``event.created`` / ``event.updated``: the whole event and its version."""
    return {
        "id": event.id,
        "name": event.name,
        "venue": event.venue,
        "starts_at": event.starts_at,
        "on_sale_at": event.on_sale_at,
        "max_per_buyer": event.max_per_buyer,
        "waiting_room": event.waiting_room,
        "user_id": event.user_id,
        "version": event.version,
    }
