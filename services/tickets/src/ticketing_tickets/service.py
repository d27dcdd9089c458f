"""Use cases of the tickets service.

Every change of a ticket is one conditional ``UPDATE ... WHERE id = :id AND version = :v`` that bumps the
version, and publishes ``ticket.updated`` with that new version in the same transaction. A write based on a
stale read therefore updates nothing instead of overwriting a newer state, and the versions on the bus form
one chain (0, 1, 2, ...) however many requests and replicas race.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Update, bindparam, exists, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common.db import new_id
from ticketing_common.errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError
from ticketing_common.events import NotYet, TicketCreated, TicketUpdated, publish
from ticketing_tickets.cache import TicketCache
from ticketing_tickets.models import CancelledOrder, Ticket
from ticketing_tickets.pagination import Cursor
from ticketing_tickets.schemas import TicketOut

logger = logging.getLogger("ticketing.tickets")

RESERVED_MESSAGE = "Cannot edit a reserved ticket"
MODIFIED_MESSAGE = "Ticket was modified, reload and try again"
# Each failed attempt means another writer committed a change, so this bounds the wait, not the progress.
MAX_UPDATE_ATTEMPTS = 100


# The event path's statements, built once: building one costs more CPU than running it.
LOCK_TICKET = (
    select(Ticket)
    .where(Ticket.id == bindparam("ticket_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
WAS_CANCELLED = select(exists().where(CancelledOrder.order_id == bindparam("order_id")))
REMEMBER_CANCELLED = (  # on the table, not the entity: it skips the ORM's bulk-DML path
    pg_insert(CancelledOrder.__table__)
    .values(order_id=bindparam("order_id"), ticket_id=bindparam("ticket_id"))
    .on_conflict_do_nothing()
)


class UnknownTicketError(Exception):
    """An order names a ticket this service never sold: bad data, retried then parked for a human."""


async def create_ticket(*, session: AsyncSession, user_id: uuid.UUID, title: str, price: Decimal) -> Ticket:
    """Put a new ticket on sale (version 0) and publish ``ticket.created``."""
    async with session.begin():
        ticket = await session.scalar(
            insert(Ticket).values(id=new_id(), title=title, price=price, user_id=user_id).returning(Ticket)
        )
        assert ticket is not None
        publish(
            session,
            TicketCreated(
                id=ticket.id, title=ticket.title, price=ticket.price, user_id=ticket.user_id, version=ticket.version
            ),
        )
    return ticket


async def get_ticket(*, session: AsyncSession, ticket_id: uuid.UUID) -> Ticket:
    """The ticket, held or not; 404 when there is none."""
    async with session.begin():
        ticket = await _load(session, ticket_id)
    if ticket is None:
        raise NotFoundError()
    return ticket


async def show_ticket(*, cache: TicketCache, open_session: Callable[[], AsyncSession], ticket_id: uuid.UUID) -> bytes:
    """The ticket's JSON body, from this replica's read model when it has it (``cache.py``), else from the
    database (then kept); 404 when there is none. ``open_session`` is called only on a miss."""
    if (body := cache.get(ticket_id)) is not None:
        return body
    epoch = cache.epoch  # before the read: a drop of the cache while it runs means the read may be stale
    ticket = await get_ticket(session=open_session(), ticket_id=ticket_id)
    return cache.offer(TicketOut.model_validate(ticket), epoch=epoch)


async def list_available(
    *, session: AsyncSession, limit: int, after: Cursor | None = None
) -> tuple[Sequence[Ticket], Cursor | None]:
    """One page of the tickets no order holds, newest first, and the cursor of the next page (or None)."""
    query = select(Ticket).where(Ticket.order_id.is_(None))
    if after is not None:
        query = query.where(tuple_(Ticket.created_at, Ticket.id) < tuple_(after.created_at, after.id))
    query = query.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit + 1)
    async with session.begin():
        rows = (await session.scalars(query)).all()
    page = rows[:limit]
    following = Cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, following


async def update_ticket(
    *,
    session: AsyncSession,
    ticket_id: uuid.UUID,
    user_id: uuid.UUID,
    title: str,
    price: Decimal,
    expected_version: int | None = None,
) -> Ticket:
    """Change the title and price of the caller's own unreserved ticket; publishes ``ticket.updated``.

    With ``expected_version`` the change applies only to that version (409 otherwise). Without it, a
    request that loses a race re-reads the ticket, re-checks it, and applies on top of the winner's change.
    """
    async with session.begin():
        for _ in range(MAX_UPDATE_ATTEMPTS):
            ticket = await _load(session, ticket_id)
            if ticket is None:
                raise NotFoundError()
            if ticket.user_id != user_id:
                raise ForbiddenError()
            if ticket.order_id is not None:
                raise BadRequestError(RESERVED_MESSAGE)
            if expected_version is not None and ticket.version != expected_version:
                raise ConflictError(MODIFIED_MESSAGE)
            updated = await _write(session, ticket, available_only=True, title=title, price=price)
            if updated is not None:
                return updated
            # Another writer committed between our read and our write; the next read sees its change.
        raise ConflictError(MODIFIED_MESSAGE)


async def reserve_for_order(*, session: AsyncSession, order_id: uuid.UUID, ticket_id: uuid.UUID) -> Ticket | None:
    """Apply ``order.created`` in the caller's transaction: the order holds the ticket from now on.

    Returns the changed ticket, or None when there is nothing to change (already held by this order, or the
    order was cancelled before its creation reached us). Raises :class:`NotYet` while another order holds
    the ticket (its cancellation is on its way) and :class:`UnknownTicketError` for a ticket we never had.
    """
    ticket = await _lock(session, ticket_id)
    if ticket is None:
        logger.error("order names an unknown ticket", extra={"order_id": str(order_id), "ticket_id": str(ticket_id)})
        raise UnknownTicketError(f"order {order_id} names unknown ticket {ticket_id}")
    if ticket.order_id == order_id:
        return None
    if await session.scalar(WAS_CANCELLED, {"order_id": order_id}):
        logger.info(
            "order was cancelled before its creation arrived; ticket stays free",
            extra={"order_id": str(order_id), "ticket_id": str(ticket_id)},
        )
        return None
    if ticket.order_id is not None:
        raise NotYet(f"ticket {ticket_id} is still held by order {ticket.order_id}")
    return _written(await _write(session, ticket, available_only=True, order_id=order_id), ticket_id)


async def release_for_order(*, session: AsyncSession, order_id: uuid.UUID, ticket_id: uuid.UUID) -> Ticket | None:
    """Apply ``order.cancelled`` in the caller's transaction: free the ticket if this order holds it.

    Remembers the cancellation, so an ``order.created`` of the same order arriving later changes nothing.
    Returns the changed ticket, or None when this order did not hold it.
    """
    ticket = await _lock(session, ticket_id)
    await session.execute(REMEMBER_CANCELLED, {"order_id": order_id, "ticket_id": ticket_id})
    if ticket is None:
        logger.warning("cancelled order names an unknown ticket", extra={"order_id": str(order_id)})
        return None
    if ticket.order_id != order_id:
        return None
    return _written(await _write(session, ticket, order_id=None), ticket_id)


def _written(ticket: Ticket | None, ticket_id: uuid.UUID) -> Ticket:
    # Under the row lock the conditional write cannot miss; if it ever does, the event must be tried again,
    # never acknowledged as applied.
    if ticket is None:
        raise NotYet(f"ticket {ticket_id} changed while the event was applied")
    return ticket


async def _load(session: AsyncSession, ticket_id: uuid.UUID) -> Ticket | None:
    # populate_existing: a re-read inside one transaction must show the latest committed row, not the copy
    # the session already holds.
    ticket: Ticket | None = await session.scalar(
        select(Ticket).where(Ticket.id == ticket_id).execution_options(populate_existing=True)
    )
    return ticket


async def _lock(session: AsyncSession, ticket_id: uuid.UUID) -> Ticket | None:
    # Both order listeners lock the ticket row first, so an order's creation and cancellation handled at
    # the same time by two replicas are applied one after the other and each sees the other's effect.
    ticket: Ticket | None = await session.scalar(LOCK_TICKET, {"ticket_id": ticket_id})
    return ticket


@functools.cache
def _update_statement(fields: tuple[str, ...], *, available_only: bool) -> Update:
    """The conditional write of ``fields`` (bound as ``new_<field>``), built once per shape."""
    statement = (
        update(Ticket)
        .where(Ticket.id == bindparam("ticket_id"), Ticket.version == bindparam("read_version"))
        .values(
            version=Ticket.version + 1, updated_at=func.now(), **{name: bindparam(f"new_{name}") for name in fields}
        )
        .returning(Ticket)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    if available_only:
        statement = statement.where(Ticket.order_id.is_(None))
    return statement


async def _write(
    session: AsyncSession, ticket: Ticket, *, available_only: bool = False, **values: Any
) -> Ticket | None:
    """Change ``ticket`` only if it is still at the version read (and, if asked, still unheld), bump the
    version and publish ``ticket.updated``; None when the row moved on meanwhile."""
    statement = _update_statement(tuple(sorted(values)), available_only=available_only)
    parameters = {"ticket_id": ticket.id, "read_version": ticket.version}
    parameters.update({f"new_{name}": value for name, value in values.items()})
    updated: Ticket | None = await session.scalar(statement, parameters)
    if updated is not None:
        publish(
            session,
            TicketUpdated(
                id=updated.id,
                title=updated.title,
                price=updated.price,
                user_id=updated.user_id,
                order_id=updated.order_id,
                version=updated.version,
            ),
        )
    return updated
