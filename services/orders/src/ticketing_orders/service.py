"""Use cases of the orders service.

Double booking is refused by the database: the partial unique index ``uq_orders_active_ticket`` admits one
order in ``created`` / ``awaiting:payment`` / ``complete`` per ticket. A new order is one statement that reads
the ticket copy and inserts with ``ON CONFLICT`` on that index, so however many buyers and replicas race, one
insert wins and the others learn from the statement's result that the ticket is reserved.

Every change of an order's status is one conditional ``UPDATE ... WHERE id = $1 AND version = $2 AND status =
$3`` that bumps the version. A decision taken on a stale read therefore changes nothing; the use case reads the
order again (it now sees the winner's change) and decides again. Events are staged on the unit of work and
written to the outbox in the transaction of the change they announce.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from ticketing_common.db import Database, UnitOfWork, new_id, utcnow
from ticketing_common.errors import BadRequestError, ConflictError, NotFoundError
from ticketing_common.events import (
    ChargeCreated,
    OrderCancelled,
    OrderCreated,
    OrderStatus,
    TicketCreated,
    TicketUpdated,
    is_next_version,
)
from ticketing_common.events.catalogue import OrderTicket, TicketRef
from ticketing_orders import queries
from ticketing_orders.queries import Charge, Order, OrderWithTicket

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


class UnknownOrderError(Exception):
    """An event names an order this service never had: retried, then parked for a human."""


async def create_order(
    *, db: Database, user_id: uuid.UUID, ticket_id: uuid.UUID, expiration_seconds: int
) -> OrderWithTicket:
    """Reserve the ticket for the caller until ``now + expiration_seconds``; publishes ``order.created``."""
    found = await queries.find_ticket_for_order(db.pool, ticket_id)
    if found is None:
        raise NotFoundError(TICKET_NOT_FOUND_MESSAGE)
    ticket, held = found
    if ticket.user_id == user_id:
        raise BadRequestError(OWN_TICKET_MESSAGE)
    if held:
        raise BadRequestError(RESERVED_MESSAGE)
    order_id = new_id()
    expires_at = utcnow() + timedelta(seconds=expiration_seconds)
    async with db.unit_of_work() as uow:
        attempt = await queries.insert_order(
            uow.conn, order_id=order_id, user_id=user_id, ticket_id=ticket_id, expires_at=expires_at
        )
        if attempt.ticket is None:
            raise NotFoundError(TICKET_NOT_FOUND_MESSAGE)
        ticket = attempt.ticket  # as the insert found it (a price may have changed since the read)
        if ticket.user_id == user_id:
            raise BadRequestError(OWN_TICKET_MESSAGE)
        if not attempt.inserted:
            raise BadRequestError(RESERVED_MESSAGE)
        uow.publish(
            OrderCreated(
                id=order_id,
                status=OrderStatus.CREATED,
                user_id=user_id,
                expires_at=expires_at,
                version=0,
                ticket=OrderTicket(id=ticket.id, price=ticket.price),
            )
        )
    return OrderWithTicket(
        id=order_id, user_id=user_id, status=OrderStatus.CREATED, expires_at=expires_at, version=0, ticket=ticket
    )


async def list_orders(*, db: Database, user_id: uuid.UUID) -> list[OrderWithTicket]:
    """The caller's orders with their tickets, newest first."""
    return await queries.list_user_orders(db.pool, user_id=user_id)


async def get_order(*, db: Database, user_id: uuid.UUID, order_id: uuid.UUID) -> OrderWithTicket:
    """The caller's order; 404 for an unknown order and for another user's (its existence is not revealed)."""
    order = await queries.find_user_order(db.pool, order_id=order_id, user_id=user_id)
    if order is None:
        raise NotFoundError()
    return order


async def cancel_order(*, db: Database, user_id: uuid.UUID, order_id: uuid.UUID) -> Order:
    """Cancel the caller's order and publish ``order.cancelled``.

    An order already cancelled stays as it is (no second event); a completed one cannot be cancelled (400).
    """
    async with db.unit_of_work() as uow:
        for _ in range(MAX_TRANSITION_ATTEMPTS):
            order = await queries.find_order(uow.conn, order_id)
            if order is None or order.user_id != user_id:
                raise NotFoundError()
            if order.status == OrderStatus.CANCELLED:
                return order
            if order.status == OrderStatus.COMPLETE:
                raise BadRequestError(COMPLETED_MESSAGE)
            cancelled = await _change_status(uow, order, OrderStatus.CANCELLED)
            if cancelled is not None:
                return cancelled
            # Another writer changed the order between our read and our write; the next read sees it.
        raise ConflictError("Order was modified, try again")


async def copy_tickets(*, uow: UnitOfWork, events: Sequence[TicketCreated]) -> int:
    """Apply ``ticket.created`` events in ``uow``: insert the copies (version 0) of tickets not copied yet; a
    ticket created again changes nothing (the first event of a batch wins, as one by one). Returns how many
    copies were inserted."""
    first: dict[uuid.UUID, TicketCreated] = {}
    for event in events:
        first.setdefault(event.id, event)
    # In id order: two batches inserting the same tickets wait for each other instead of deadlocking.
    inserted = await queries.insert_tickets(uow.conn, sorted(first.values(), key=lambda e: e.id))
    return len(inserted)


async def update_ticket_copies(*, uow: UnitOfWork, events: Sequence[TicketUpdated]) -> int:
    """Apply ``ticket.updated`` events in ``uow``: each one that is its copy's next version.

    A version already applied changes nothing. Raises ``NotYet`` when any event is ahead of its copy (or the copy
    does not exist yet): the caller's transaction must then roll back, and the events come back (a batch is
    replayed one event at a time). Returns how many were applied.
    """
    unique: dict[tuple[uuid.UUID, int], TicketUpdated] = {}
    for event in events:
        unique.setdefault((event.id, event.version), event)  # the same version twice: the first, as one by one
    outcomes = await queries.apply_ticket_updates(uow.conn, list(unique.values()))
    return sum(is_next_version(o.copy_version, o.version) for o in outcomes)


async def expire_order(*, uow: UnitOfWork, order_id: uuid.UUID) -> Order | None:
    """Apply ``order.expired`` in ``uow``: cancel the order unless it is paid or cancelled.

    Returns the cancelled order, or None when nothing changed (so a repeated expiry publishes nothing).
    """
    for _ in range(MAX_TRANSITION_ATTEMPTS):
        order = await queries.find_order(uow.conn, order_id)
        if order is None:
            logger.warning("expiry of an unknown order ignored", extra={"order_id": str(order_id)})
            return None
        if order.status in (OrderStatus.COMPLETE, OrderStatus.CANCELLED):
            return None
        cancelled = await _change_status(uow, order, OrderStatus.CANCELLED)
        if cancelled is not None:
            return cancelled
    raise RuntimeError(f"order {order_id} keeps changing; retrying the event")


async def record_charge(*, uow: UnitOfWork, charge: ChargeCreated) -> Charge | None:
    """Apply ``charge.created`` in ``uow``: the charge pays its order (``complete``).

    Each charge is recorded once; returns None for one already recorded. A charge that cannot pay its order
    (cancelled, or already paid by another charge) is recorded with a refund reason and logged as a warning: the
    buyer's money must go back.
    """
    claim = await queries.claim_charge(uow.conn, charge)
    if claim is None:
        raise UnknownOrderError(f"charge {charge.id} names unknown order {charge.order_id}")
    recorded = claim.charge
    if recorded is None:
        return None
    order: Order | None = claim.order
    for _ in range(MAX_TRANSITION_ATTEMPTS):
        assert order is not None  # orders are never deleted
        if order.status == OrderStatus.CANCELLED:
            return await _needs_refund(uow, recorded, order, REFUND_ORDER_CANCELLED)
        if order.status == OrderStatus.COMPLETE:
            return await _needs_refund(uow, recorded, order, REFUND_ORDER_ALREADY_PAID)
        if await _change_status(uow, order, OrderStatus.COMPLETE) is not None:
            return recorded
        order = await queries.find_order(uow.conn, charge.order_id)
    raise RuntimeError(f"order {charge.order_id} keeps changing; retrying the event")


async def _needs_refund(uow: UnitOfWork, charge: Charge, order: Order, reason: str) -> Charge:
    await queries.set_refund_reason(uow.conn, charge.id, reason)
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
            "order_status": order.status.value,
            "stripe_id": charge.stripe_id,
            "amount": charge.amount,
            "currency": charge.currency,
        },
    )
    return replace(charge, refund_reason=reason)


async def _change_status(uow: UnitOfWork, order: Order, status: OrderStatus) -> Order | None:
    """Move ``order`` to ``status`` only if it is still at the version and status read, bump the version and
    stage what the change announces; None when the row moved on meanwhile."""
    changed = await queries.change_order_status(uow.conn, order, status)
    if changed is not None and status == OrderStatus.CANCELLED:
        uow.publish(OrderCancelled(id=changed.id, version=changed.version, ticket=TicketRef(id=changed.ticket_id)))
    return changed
