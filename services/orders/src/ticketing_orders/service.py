"""Use cases of the orders service.

Double booking is refused by the database: the partial unique index ``uq_orders_active_ticket`` admits one
order in ``created`` / ``awaiting:payment`` / ``complete`` per ticket, so however many buyers and replicas
race, one insert wins and the others fail on the index.

Every change of an order's status is one conditional ``UPDATE ... WHERE id = :id AND version = :v AND
status = :s`` that bumps the version. A decision taken on a stale read therefore changes nothing; the use case
reads the order again (it now sees the winner's change) and decides again. Events are staged in the outbox in
the same transaction as the change they announce.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from ticketing_common.db import new_id, utcnow
from ticketing_common.errors import BadRequestError, ConflictError, NotFoundError
from ticketing_common.events import (
    ChargeCreated,
    OrderCancelled,
    OrderCreated,
    OrderStatus,
    TicketCreated,
    TicketUpdated,
    is_next_version,
    publish,
)
from ticketing_common.events.catalogue import OrderTicket, TicketRef
from ticketing_orders.models import ACTIVE_ORDER_INDEX, Charge, Order, Ticket

logger = logging.getLogger("ticketing.orders")

RESERVED_MESSAGE = "Ticket is already reserved"
OWN_TICKET_MESSAGE = "You cannot buy your own ticket"
COMPLETED_MESSAGE = "Cannot cancel a completed order"
TICKET_NOT_FOUND_MESSAGE = "Ticket not found"
REFUND_ORDER_CANCELLED = "order cancelled"
REFUND_ORDER_ALREADY_PAID = "order already paid"
# An order changes status at most three times (created -> awaiting:payment -> complete or cancelled), and each
# lost race means one of those changes was committed, so a handful of attempts always reaches a final answer.
MAX_TRANSITION_ATTEMPTS = 10

# The hot paths' statements, built once: building one costs more CPU than running it. A new order is one
# prebuilt insert, not a unit-of-work flush: the use case went from 1.35 to 0.86 ms of CPU (bench/README.md).
INSERT_ORDER = insert(Order.__table__).values(
    {column: bindparam(column) for column in ("id", "user_id", "status", "expires_at", "version", "ticket_id")}
)
# The ticket listener's.
_tickets = Ticket.__table__
LOCK_TICKET_VERSION = (
    select(_tickets.c.version).where(_tickets.c.id == bindparam("ticket_id")).with_for_update(key_share=True)
)
UPDATE_TICKET_COPY = (
    update(_tickets)
    .where(_tickets.c.id == bindparam("ticket_id"))
    .values(
        title=bindparam("new_title"),
        price=bindparam("new_price"),
        user_id=bindparam("new_user_id"),
        version=bindparam("new_version"),
    )
)


class UnknownOrderError(Exception):
    """An event names an order this service never had: retried, then parked for a human."""


async def create_order(
    *, session: AsyncSession, user_id: uuid.UUID, ticket_id: uuid.UUID, expiration_seconds: int
) -> Order:
    """Reserve the ticket for the caller until ``now + expiration_seconds``; publishes ``order.created``."""
    try:
        async with session.begin():
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None:
                raise NotFoundError(TICKET_NOT_FOUND_MESSAGE)
            if ticket.user_id == user_id:
                raise BadRequestError(OWN_TICKET_MESSAGE)
            values = {
                "id": new_id(),
                "user_id": user_id,
                "status": OrderStatus.CREATED.value,
                "expires_at": utcnow() + timedelta(seconds=expiration_seconds),
                "version": 0,
                "ticket_id": ticket.id,
            }
            # A concurrent active order makes this insert fail on the partial unique index.
            await session.execute(INSERT_ORDER, values)
            order = Order(**values, ticket=ticket)  # what was written, for the answer; not tracked by the session
            publish(
                session,
                OrderCreated(
                    id=order.id,
                    status=OrderStatus.CREATED,
                    user_id=order.user_id,
                    expires_at=order.expires_at,
                    version=order.version,
                    ticket=OrderTicket(id=ticket.id, price=ticket.price),
                ),
            )
    except IntegrityError as exc:
        if violated_constraint(exc) == ACTIVE_ORDER_INDEX:
            raise BadRequestError(RESERVED_MESSAGE) from None
        raise
    return order


async def list_orders(*, session: AsyncSession, user_id: uuid.UUID) -> Sequence[Order]:
    """The caller's orders with their tickets, newest first."""
    async with session.begin():
        orders = await session.scalars(
            select(Order)
            .options(joinedload(Order.ticket))
            .where(Order.user_id == user_id)
            .order_by(Order.created_at.desc(), Order.id.desc())
        )
        return orders.all()


async def get_order(*, session: AsyncSession, user_id: uuid.UUID, order_id: uuid.UUID) -> Order:
    """The caller's order; 404 for an unknown order and for another user's (its existence is not revealed)."""
    async with session.begin():
        order = await session.scalar(
            select(Order).options(joinedload(Order.ticket)).where(Order.id == order_id, Order.user_id == user_id)
        )
    if order is None:
        raise NotFoundError()
    return order


async def cancel_order(*, session: AsyncSession, user_id: uuid.UUID, order_id: uuid.UUID) -> Order:
    """Cancel the caller's order and publish ``order.cancelled``.

    An order already cancelled stays as it is (no second event); a completed one cannot be cancelled (400).
    """
    async with session.begin():
        for _ in range(MAX_TRANSITION_ATTEMPTS):
            order = await _load(session, order_id)
            if order is None or order.user_id != user_id:
                raise NotFoundError()
            if order.status == OrderStatus.CANCELLED:
                return order
            if order.status == OrderStatus.COMPLETE:
                raise BadRequestError(COMPLETED_MESSAGE)
            cancelled = await _change_status(session, order, OrderStatus.CANCELLED)
            if cancelled is not None:
                return cancelled
            # Another writer changed the order between our read and our write; the next read sees it.
        raise ConflictError("Order was modified, try again")


async def copy_ticket(*, session: AsyncSession, event: TicketCreated) -> bool:
    """Apply ``ticket.created`` in the caller's transaction: insert the copy; False when it already exists."""
    inserted = await session.scalar(
        pg_insert(Ticket)
        .values(id=event.id, title=event.title, price=event.price, user_id=event.user_id, version=event.version)
        .on_conflict_do_nothing(index_elements=[Ticket.id])
        .returning(Ticket.id)
    )
    return inserted is not None


async def update_ticket_copy(*, session: AsyncSession, event: TicketUpdated) -> bool:
    """Apply ``ticket.updated`` in the caller's transaction when it is the copy's next version.

    Returns False for a version already applied; raises ``NotYet`` for one that is ahead (or a copy that does
    not exist yet), so the event comes back later.
    """
    # The row lock makes two replicas applying two versions of one ticket take turns. It is the weaker
    # FOR NO KEY UPDATE (the id never changes), so orders being placed on the ticket (whose foreign key
    # takes FOR KEY SHARE) do not wait for it, nor it for them.
    version = await session.scalar(LOCK_TICKET_VERSION, {"ticket_id": event.id})
    if not is_next_version(version, event.version):
        return False
    await session.execute(
        UPDATE_TICKET_COPY,
        {
            "ticket_id": event.id,
            "new_title": event.title,
            "new_price": event.price,
            "new_user_id": event.user_id,
            "new_version": event.version,
        },
    )
    return True


async def expire_order(*, session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    """Apply ``order.expired`` in the caller's transaction: cancel the order unless it is paid or cancelled.

    Returns the cancelled order, or None when nothing changed (so a repeated expiry publishes nothing).
    """
    for _ in range(MAX_TRANSITION_ATTEMPTS):
        order = await _load(session, order_id)
        if order is None:
            logger.warning("expiry of an unknown order ignored", extra={"order_id": str(order_id)})
            return None
        if order.status in (OrderStatus.COMPLETE, OrderStatus.CANCELLED):
            return None
        cancelled = await _change_status(session, order, OrderStatus.CANCELLED)
        if cancelled is not None:
            return cancelled
    raise RuntimeError(f"order {order_id} keeps changing; retrying the event")


async def record_charge(*, session: AsyncSession, charge: ChargeCreated) -> Charge:
    """Apply ``charge.created`` in the caller's transaction: the charge pays its order (``complete``).

    Each charge is recorded once. A charge that cannot pay its order (cancelled, or already paid by another
    charge) is recorded with a refund reason and logged as a warning: the buyer's money must go back.
    """
    if await _load(session, charge.order_id) is None:
        raise UnknownOrderError(f"charge {charge.id} names unknown order {charge.order_id}")
    # Claim the charge first: a charge republished under another event id, or handled by two replicas at
    # once, is applied by exactly one of them.
    recorded = await session.scalar(
        pg_insert(Charge)
        .values(
            id=charge.id,
            order_id=charge.order_id,
            stripe_id=charge.stripe_id,
            amount=charge.amount,
            currency=charge.currency,
        )
        .on_conflict_do_nothing(index_elements=[Charge.id])
        .returning(Charge)
    )
    if recorded is None:
        existing = await session.get(Charge, charge.id)
        assert existing is not None
        return existing
    for _ in range(MAX_TRANSITION_ATTEMPTS):
        order = await _load(session, charge.order_id)
        assert order is not None
        if order.status == OrderStatus.CANCELLED:
            return await _needs_refund(session, recorded, order, REFUND_ORDER_CANCELLED)
        if order.status == OrderStatus.COMPLETE:
            return await _needs_refund(session, recorded, order, REFUND_ORDER_ALREADY_PAID)
        if await _change_status(session, order, OrderStatus.COMPLETE) is not None:
            return recorded
    raise RuntimeError(f"order {charge.order_id} keeps changing; retrying the event")


async def _needs_refund(session: AsyncSession, charge: Charge, order: Order, reason: str) -> Charge:
    charge.refund_reason = reason
    message = (
        "charge for cancelled order needs refund"
        if reason == REFUND_ORDER_CANCELLED
        else "charge for already paid order needs refund"
    )
    logger.warning(
        message,
        extra={
            "charge_id": str(charge.id),
            "order_id": str(order.id),
            "order_status": order.status,
            "stripe_id": charge.stripe_id,
            "amount": charge.amount,
            "currency": charge.currency,
        },
    )
    await session.flush()
    return charge


async def _load(session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    # populate_existing: a re-read inside one transaction must show the latest committed row, not the copy
    # the session already holds.
    order: Order | None = await session.scalar(
        select(Order).where(Order.id == order_id).execution_options(populate_existing=True)
    )
    return order


async def _change_status(session: AsyncSession, order: Order, status: OrderStatus) -> Order | None:
    """Move ``order`` to ``status`` only if it is still at the version and status read, bump the version and
    publish what the change announces; None when the row moved on meanwhile."""
    changed: Order | None = await session.scalar(
        update(Order)
        .where(Order.id == order.id, Order.version == order.version, Order.status == order.status)
        .values(status=status.value, version=Order.version + 1)
        .returning(Order)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    if changed is not None and status == OrderStatus.CANCELLED:
        publish(session, OrderCancelled(id=changed.id, version=changed.version, ticket=TicketRef(id=changed.ticket_id)))
    return changed


def violated_constraint(exc: IntegrityError) -> str | None:
    """The name of the constraint or index an insert or update broke, as PostgreSQL reports it."""
    cause: BaseException | None = exc.orig
    while cause is not None:
        name = getattr(cause, "constraint_name", None)
        if name:
            return str(name)
        cause = cause.__cause__
    return None
