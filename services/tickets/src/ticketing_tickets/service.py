"""Use cases of the tickets service.

Every change of a ticket is one conditional ``UPDATE`` (``queries.py``) that bumps the version and returns the
new row, and publishes ``ticket.updated`` with that row in the same unit of work. A write based on a stale
state therefore writes nothing instead of overwriting a newer one, and the versions on the bus form one chain
(0, 1, 2, ...) however many requests and replicas race.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from decimal import Decimal

from ticketing_common.db import Database, UnitOfWork, new_id
from ticketing_common.errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError
from ticketing_common.events import NotYet, TicketCreated, TicketUpdated
from ticketing_tickets import queries
from ticketing_tickets.cache import TicketCache
from ticketing_tickets.pagination import Cursor
from ticketing_tickets.queries import Hold, Ticket
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
    """A batch of order events that the set-based path does not apply (a ticket named twice, an unknown
    ticket): the listener runner rolls it back and replays its events one at a time."""


async def create_ticket(*, db: Database, user_id: uuid.UUID, title: str, price: Decimal) -> Ticket:
    """Put a new ticket on sale (version 0) and publish ``ticket.created``."""
    async with db.unit_of_work() as uow:
        ticket = await queries.insert_ticket(uow.conn, ticket_id=new_id(), title=title, price=price, user_id=user_id)
        uow.publish(
            TicketCreated(
                id=ticket.id, title=ticket.title, price=ticket.price, user_id=ticket.user_id, version=ticket.version
            )
        )
    return ticket


async def get_ticket(*, db: Database, ticket_id: uuid.UUID) -> Ticket:
    """The ticket, held or not; 404 when there is none."""
    ticket = await queries.find_ticket(db.pool, ticket_id)
    if ticket is None:
        raise NotFoundError()
    return ticket


async def show_ticket(*, db: Database, cache: TicketCache, ticket_id: uuid.UUID) -> bytes:
    """The ticket's JSON body, from this replica's read model when it has it (``cache.py``), else from the
    database (then kept); 404 when there is none."""
    if (body := cache.get(ticket_id)) is not None:
        return body
    epoch = cache.epoch  # before the read: a drop of the cache while it runs means the read may be stale
    ticket = await get_ticket(db=db, ticket_id=ticket_id)
    return cache.offer(TicketOut.model_validate(ticket), epoch=epoch)


async def list_available(
    *, db: Database, limit: int, after: Cursor | None = None
) -> tuple[Sequence[Ticket], Cursor | None]:
    """One page of the tickets no order holds, newest first, and the cursor of the next page (or None)."""
    rows = await queries.list_available(
        db.pool, limit=limit + 1, after=(after.created_at, after.id) if after is not None else None
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
    racing another one applies on top of the winner's change. The answer when nothing was written comes from
    what the statement found, checked in the API's order: 404, 403, 400 (reserved), 409.
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
            if edit.user_id != user_id:
                raise ForbiddenError()
            if edit.order_id is not None:
                raise BadRequestError(RESERVED_MESSAGE)
            if expected_version is not None and edit.version != expected_version:
                raise ConflictError(MODIFIED_MESSAGE)
            # The row changed while the statement waited for it (a hold, or a version bump when one was
            # expected): the next statement sees that change and answers from it.
        raise ConflictError(MODIFIED_MESSAGE)


async def reserve_for_order(*, uow: UnitOfWork, order_id: uuid.UUID, ticket_id: uuid.UUID) -> Ticket | None:
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
    return _settle_hold(uow, hold, order_id=order_id, holder=holders[ticket_id])


async def reserve_for_orders(*, uow: UnitOfWork, orders: Sequence[OrderOfTicket]) -> list[Ticket]:
    """Apply several ``order.created`` in ``uow`` with two statements, exactly as one by one in this order;
    returns the changed tickets. A ticket named twice, an unknown ticket or one another order holds raises,
    so that the events are replayed one at a time, each to meet its own fate."""
    ticket_ids = _distinct_tickets(orders)
    holders = await queries.lock_tickets(uow.conn, ticket_ids)
    if len(holders) != len(ticket_ids):
        raise NotInOneGo("an order names an unknown ticket")
    wanted = [(order_id, ticket_id) for order_id, ticket_id in orders if holders[ticket_id] != order_id]
    holds = await queries.hold_tickets(uow.conn, wanted) if wanted else []
    changed: list[Ticket] = []
    for (order_id, ticket_id), hold in zip(wanted, holds, strict=True):
        if (ticket := _settle_hold(uow, hold, order_id=order_id, holder=holders[ticket_id])) is not None:
            changed.append(ticket)
    return changed


def _settle_hold(uow: UnitOfWork, hold: Hold, *, order_id: uuid.UUID, holder: uuid.UUID | None) -> Ticket | None:
    """Publish what a hold changed; None for a cancelled order; NotYet when it could not hold the ticket."""
    if hold.held is not None:
        _publish_updated(uow, hold.held)
        return hold.held
    if hold.cancelled:
        logger.info(
            "order was cancelled before its creation arrived; ticket stays free",
            extra={"order_id": str(order_id), "ticket_id": str(hold.ticket_id)},
        )
        return None
    if holder is not None:
        raise NotYet(f"ticket {hold.ticket_id} is still held by order {holder}")
    # Under the row lock the hold of a free ticket cannot miss; if it ever does, the event must be tried
    # again, never acknowledged as applied.
    raise NotYet(f"ticket {hold.ticket_id} changed while the event was applied")


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
    ticket_ids = _distinct_tickets(orders)
    if len({order_id for order_id, _ in orders}) != len(orders):
        raise NotInOneGo("an order is cancelled twice in one batch")
    holders = await queries.lock_tickets(uow.conn, ticket_ids)
    released = {ticket.id: ticket for ticket in await queries.release_tickets(uow.conn, orders)}
    changed: list[Ticket] = []
    for order_id, ticket_id in orders:
        if ticket_id not in holders:
            logger.warning("cancelled order names an unknown ticket", extra={"order_id": str(order_id)})
        elif holders[ticket_id] == order_id:
            if (ticket := released.get(ticket_id)) is None:
                raise NotYet(f"ticket {ticket_id} changed while the event was applied")  # as in _settle_hold
            _publish_updated(uow, ticket)
            changed.append(ticket)
    return changed


def _distinct_tickets(orders: Sequence[OrderOfTicket]) -> list[uuid.UUID]:
    # A ticket changes at most once per statement; two events of one ticket are applied one after the other.
    ticket_ids = [ticket_id for _, ticket_id in orders]
    if len(set(ticket_ids)) != len(ticket_ids):
        raise NotInOneGo("a ticket is named twice in one batch")
    return ticket_ids


def _publish_updated(uow: UnitOfWork, ticket: Ticket) -> None:
    uow.publish(
        TicketUpdated(
            id=ticket.id,
            title=ticket.title,
            price=ticket.price,
            user_id=ticket.user_id,
            order_id=ticket.order_id,
            version=ticket.version,
        )
    )
