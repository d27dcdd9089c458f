"""Use cases of the orders service: place, list, show and cancel orders (routes), and apply the events of
tickets, events, admissions, expiries and charges (listeners).

Double booking is refused by the database: the partial unique index ``uq_orders_active_ticket`` admits one active
order per ticket, and a new order is one insert with ``ON CONFLICT`` on it, so however many buyers and replicas
race, one insert wins and the others learn from its result that the ticket is reserved. The same insert applies
the rules of the ticket's event (sale open, waiting room, limit per buyer); one buyer's orders of one event are
placed one at a time (an advisory lock taken just before), so the limit holds however many they send at once.

Every change of an order's status is a compare-and-set (:func:`_transition`): a decision taken on a stale read
changes nothing, and the order is read again and decided again on the winner's state. The rules themselves are
in ``domain.py``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from functools import partial

from ticketing_common.copy_waits import CopyWaits
from ticketing_common.db import Database, UnitOfWork, new_id, utcnow
from ticketing_common.errors import ConflictError, NotFoundError
from ticketing_common.events import (
    BuyerAdmitted,
    ChargeCreated,
    EventCreated,
    EventUpdated,
    OrderCancelled,
    OrderCreated,
    OrderStatus,
    TicketCreated,
    TicketUpdated,
)
from ticketing_common.events.catalogue import OrderTicket, TicketRef
from ticketing_orders import domain, queries
from ticketing_orders.queries import Charge, Order, OrderWithTicket, Ticket

logger = logging.getLogger("ticketing.orders")

# An order changes status at most twice, and each lost race means one of those changes committed: a handful of
# attempts always reaches a final answer.
MAX_TRANSITION_ATTEMPTS = 10
# A ticket moved to another event between the read and the insert (the tickets service changed it): try again.
MAX_PLACE_ATTEMPTS = 3


class UnknownOrderError(Exception):
    """An event names an order this service never had: retried, then parked for a human."""


class _TicketChanged(Exception):
    """The insert found the ticket changed (another version, maybe of another event) since it was read."""


async def create_order(
    *,
    db: Database,
    waits: CopyWaits,
    user_id: uuid.UUID,
    ticket_id: uuid.UUID,
    expiration_seconds: int,
    wait_seconds: float,
) -> OrderWithTicket:
    """Place the order as :func:`place_order` does; while the ticket's event has no copy here yet, or the
    buyer is not admitted from its waiting room, wait up to ``wait_seconds`` for that copy (the event, or the
    admission, on its way) before the refusal, trying again as soon as any replica has stored it."""
    place = partial(place_order, db=db, user_id=user_id, ticket_id=ticket_id, expiration_seconds=expiration_seconds)
    return await waits.until_copied(None, place, seconds=wait_seconds)


async def place_order(
    *, db: Database, user_id: uuid.UUID, ticket_id: uuid.UUID, expiration_seconds: int
) -> OrderWithTicket:
    """Reserve the ticket for the caller until ``now + expiration_seconds``; publishes ``order.created``. The
    rules, in their order, are ``domain.orderable_ticket``'s."""
    for _ in range(MAX_PLACE_ATTEMPTS):
        now = utcnow()
        # Most attempts in a sale are on a held ticket: one read outside any transaction turns them away.
        available = await queries.find_ticket_for_order(db.pool, ticket_id, buyer=user_id, now=now)
        ticket = domain.orderable_ticket(
            available.ticket, buyer=user_id, held=available.held, sale=available.sale, now=now
        )
        try:
            return await _insert_order(db, user_id=user_id, ticket=ticket, expiration_seconds=expiration_seconds)
        except _TicketChanged:
            continue
    raise ConflictError("Ticket was modified, try again")


async def _insert_order(
    db: Database, *, user_id: uuid.UUID, ticket: Ticket, expiration_seconds: int
) -> OrderWithTicket:
    """The decision: one insert, which decides every race and writes ``order.created`` (made from ``ticket`` as
    read) with the order. For a ticket of an event it runs in a transaction after the buyer's lock for that
    event; a ticket of no event needs no lock, and the statement commits on its own."""
    order_id = new_id()
    unit = db.one_statement() if ticket.event_id is None else db.unit_of_work()
    async with unit as uow:
        if ticket.event_id is not None:
            await queries.lock_buyer_at_event(uow.conn, domain.buyer_event_lock_key(user_id, ticket.event_id))
        now = utcnow()  # after the lock: the rules are judged, and the window starts, when the insert runs
        expires_at = now + timedelta(seconds=expiration_seconds)
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
        attempt = await queries.insert_order(
            uow.conn,
            order_id=order_id,
            user_id=user_id,
            ticket_id=ticket.id,
            expires_at=expires_at,
            now=now,
            event_id=ticket.event_id,
            version=ticket.version,
            events=uow.outbox_arguments(),
        )
        if attempt.ticket is not None and attempt.ticket.version != ticket.version:
            raise _TicketChanged()  # nothing written (rolled back): read again, lock the right event
        # Not inserted: raises why (reserved, or the sale's rules as the statement found them).
        domain.orderable_ticket(attempt.ticket, buyer=user_id, held=not attempt.inserted, sale=attempt.sale, now=now)
    return OrderWithTicket(
        id=order_id, user_id=user_id, status=OrderStatus.CREATED, expires_at=expires_at, version=0, ticket=ticket
    )


async def list_orders(*, db: Database, user_id: uuid.UUID) -> list[OrderWithTicket]:
    """The caller's orders with their tickets, newest first."""
    return await queries.list_user_orders(db.pool, user_id=user_id)


async def show_order(*, db: Database, user_id: uuid.UUID, order_id: uuid.UUID) -> OrderWithTicket:
    """The caller's order; 404 for an unknown order and for another user's (its existence is not revealed)."""
    order = await queries.find_user_order(db.pool, order_id=order_id, user_id=user_id)
    if order is None:
        raise NotFoundError()
    return order


async def cancel_order(*, db: Database, user_id: uuid.UUID, order_id: uuid.UUID) -> None:
    """Cancel the caller's order and publish ``order.cancelled``; a cancelled order stays as it is (no second
    event), a complete one cannot be cancelled (400), another user's is 404."""
    async with db.unit_of_work() as uow:
        order = await queries.find_order(uow.conn, order_id)
        if order is None or order.user_id != user_id:
            raise NotFoundError()
        await _transition(uow, order, domain.cancelled_by_buyer)


async def copy_created_tickets(*, uow: UnitOfWork, events: Sequence[TicketCreated]) -> None:
    """Apply ``ticket.created`` events in ``uow``: insert the copies (version 0) of tickets not copied yet."""
    await queries.insert_tickets(uow.conn, domain.first_creation_of_each(events))


async def copy_updated_tickets(*, uow: UnitOfWork, events: Sequence[TicketUpdated]) -> None:
    """Apply ``ticket.updated`` events in ``uow``: each one that is its copy's next version; one already applied
    changes nothing. Raises ``NotYet`` when any is ahead of its copy: ``uow`` must roll back (a batch is then
    replayed one event at a time)."""
    outcomes = await queries.apply_ticket_updates(uow.conn, domain.first_of_each_version(events))
    domain.ensure_none_ahead(outcomes)


async def copy_created_events(*, uow: UnitOfWork, events: Sequence[EventCreated]) -> None:
    """Apply ``event.created`` events in ``uow``: insert the copies of events not copied yet."""
    await queries.insert_events(uow.conn, domain.first_creation_of_each(events))


async def copy_updated_events(*, uow: UnitOfWork, events: Sequence[EventUpdated]) -> None:
    """Apply ``event.updated`` events in ``uow``, as :func:`copy_updated_tickets` does for tickets: each one that
    is its copy's next version; behind changes nothing; any ahead raises ``NotYet`` (``uow`` must roll back)."""
    outcomes = await queries.apply_event_updates(uow.conn, domain.first_of_each_version(events))
    domain.ensure_none_ahead(outcomes)


async def admit_buyers(*, uow: UnitOfWork, admissions: Sequence[BuyerAdmitted]) -> None:
    """Apply ``queue.admitted`` events in ``uow``: keep each buyer's latest admission to each event."""
    await queries.admit_buyers(uow.conn, domain.latest_admission_of_each_buyer(admissions))


async def expire_order(*, uow: UnitOfWork, order_id: uuid.UUID) -> None:
    """Apply ``order.expired`` in ``uow``: cancel the order unless it is paid or cancelled already."""
    order = await queries.find_order(uow.conn, order_id)
    if order is None:
        logger.warning("expiry of an unknown order ignored", extra={"order_id": str(order_id)})
        return
    await _transition(uow, order, domain.cancelled_by_expiry)


async def record_charge(*, uow: UnitOfWork, charge: ChargeCreated) -> None:
    """Apply ``charge.created`` in ``uow``: record the charge once, and let it pay its order (``complete``).

    A charge that cannot pay its order (cancelled, or paid by another charge) is kept with a refund reason and
    logged as a warning: the buyer's money must go back.
    """
    claim = await queries.claim_charge(uow.conn, charge)
    if claim is None:
        raise UnknownOrderError(f"charge {charge.id} names unknown order {charge.order_id}")
    if claim.charge is None:
        return  # recorded before, by an earlier event or a concurrent replica
    order, paid = await _transition(uow, claim.order, domain.paid_by_charge)
    if not paid:
        await _needs_refund(uow, claim.charge, order)


async def _transition(uow: UnitOfWork, order: Order, rule: domain.Transition) -> tuple[Order, bool]:
    """Move ``order`` where ``rule`` says, only if it is still at the version and status read; when another
    writer changed it first, read it again and apply ``rule`` to the winner's state. Stages the
    ``order.cancelled`` a cancellation announces. Returns the order as left, and whether this call changed it."""
    for _ in range(MAX_TRANSITION_ATTEMPTS):
        status = rule(order.status)
        if status is None:
            return order, False
        changed = await queries.change_order_status(uow.conn, order, status)
        if changed is not None:
            if status == OrderStatus.CANCELLED:
                uow.publish(
                    OrderCancelled(id=changed.id, version=changed.version, ticket=TicketRef(id=changed.ticket_id))
                )
            return changed, True
        again = await queries.find_order(uow.conn, order.id)
        assert again is not None, "orders are never deleted"
        order = again
    raise ConflictError("Order was modified, try again")


async def _needs_refund(uow: UnitOfWork, charge: Charge, order: Order) -> None:
    reason = domain.refund_reason(order.status)
    await queries.set_refund_reason(uow.conn, charge.id, reason)
    message = (
        "charge for cancelled order needs refund"
        if order.status == OrderStatus.CANCELLED
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
