"""The rules of the orders service, without I/O: who may order a ticket, what each request or event does to an
order in each status, and which ticket events the copy applies.

An order's life::

    created ──charge──▶ complete
       │
       └──cancel or expiry──▶ cancelled

``complete`` and ``cancelled`` are final. The use cases in ``service.py`` apply these rules with compare-and-set
statements.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ticketing_common.errors import BadRequestError, NotFoundError
from ticketing_common.events import OrderStatus, TicketCreated, TicketUpdated, is_next_version

if TYPE_CHECKING:
    from ticketing_orders.queries import Ticket, TicketUpdateOutcome

TICKET_NOT_FOUND_MESSAGE = "Ticket not found"
OWN_TICKET_MESSAGE = "You cannot buy your own ticket"
RESERVED_MESSAGE = "Ticket is already reserved"
COMPLETED_MESSAGE = "Cannot cancel a completed order"

FINAL_STATUSES = frozenset({OrderStatus.CANCELLED, OrderStatus.COMPLETE})

Transition = Callable[[OrderStatus], OrderStatus | None]
"""A rule for one cause of change: the status an order in a given status moves to, or None to leave it."""


def orderable_ticket(ticket: Ticket | None, *, buyer: uuid.UUID, held: bool) -> Ticket:
    """The ticket, if ``buyer`` may order it: 404 when there is no such ticket, 400 when it is the buyer's own or
    an active order ``held`` it (checked in that order)."""
    if ticket is None:
        raise NotFoundError(TICKET_NOT_FOUND_MESSAGE)
    if ticket.user_id == buyer:
        raise BadRequestError(OWN_TICKET_MESSAGE)
    if held:
        raise BadRequestError(RESERVED_MESSAGE)
    return ticket


def cancelled_by_buyer(status: OrderStatus) -> OrderStatus | None:
    """The buyer cancels: cancelled, unless it already is (nothing to do); a complete order cannot be (400)."""
    if status == OrderStatus.COMPLETE:
        raise BadRequestError(COMPLETED_MESSAGE)
    return None if status == OrderStatus.CANCELLED else OrderStatus.CANCELLED


def cancelled_by_expiry(status: OrderStatus) -> OrderStatus | None:
    """The order's time is up: an unpaid order is cancelled; a paid or cancelled one stays as it is."""
    return None if status in FINAL_STATUSES else OrderStatus.CANCELLED


def paid_by_charge(status: OrderStatus) -> OrderStatus | None:
    """A charge arrived: an unpaid order is complete; a paid or cancelled one stays as it is (and the charge
    needs a refund, see :func:`refund_reason`)."""
    return None if status in FINAL_STATUSES else OrderStatus.COMPLETE


def refund_reason(status: OrderStatus) -> str:
    """Why a charge that could not pay its order (in ``status``) must be refunded."""
    if status == OrderStatus.CANCELLED:
        return "order cancelled"
    if status == OrderStatus.COMPLETE:
        return "order already paid"
    raise ValueError(f"a charge pays an order in status {status}")


def first_creation_of_each_ticket(events: Iterable[TicketCreated]) -> list[TicketCreated]:
    """The creations to insert, in ticket id order: a ticket created twice keeps its first creation (as one by
    one), and batches inserting the same tickets lock them in one order (they wait instead of deadlocking)."""
    first: dict[uuid.UUID, TicketCreated] = {}
    for event in events:
        first.setdefault(event.id, event)
    return sorted(first.values(), key=lambda event: event.id)


def first_of_each_version(events: Iterable[TicketUpdated]) -> list[TicketUpdated]:
    """The updates to apply: one event per (ticket, version), the first, as one by one."""
    first: dict[tuple[uuid.UUID, int], TicketUpdated] = {}
    for event in events:
        first.setdefault((event.id, event.version), event)
    return list(first.values())


def ensure_none_ahead(outcomes: Iterable[TicketUpdateOutcome]) -> None:
    """Accept updates that were their copy's next version (applied) or behind it (already applied, no effect);
    raise ``NotYet`` when any is ahead of its copy, or its copy does not exist yet: the whole transaction must
    roll back and the events come back later."""
    for outcome in outcomes:
        is_next_version(outcome.copy_version, outcome.version)
