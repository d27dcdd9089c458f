"""The rules of the orders service, without I/O: who may order a ticket (its seller, its event's sale, the
waiting room, the limit per buyer), what each request or event does to an order in each status, and which ticket,
event and admission events the copies apply.

An order's life::

    created ──charge──▶ complete
       │
       └──cancel or expiry──▶ cancelled

``complete`` and ``cancelled`` are final. The use cases in ``service.py`` apply these rules with compare-and-set
statements.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

from ticketing_common.copy_waits import NotCopiedYet
from ticketing_common.db import utcnow
from ticketing_common.errors import BadRequestError, ForbiddenError, NotFoundError
from ticketing_common.events import BuyerAdmitted, OrderStatus, is_next_version

if TYPE_CHECKING:
    from ticketing_orders.queries import EventSale, Ticket

TICKET_NOT_FOUND_MESSAGE = "Ticket not found"
OWN_TICKET_MESSAGE = "You cannot buy your own ticket"
RESERVED_MESSAGE = "Ticket is already reserved"
COMPLETED_MESSAGE = "Cannot cancel a completed order"
NOT_ON_SALE_MESSAGE = "Ticket is not on sale yet"
WAITING_ROOM_MESSAGE = "Join the waiting room first"

FINAL_STATUSES = frozenset({OrderStatus.CANCELLED, OrderStatus.COMPLETE})

Transition = Callable[[OrderStatus], OrderStatus | None]
"""A rule for one cause of change: the status an order in a given status moves to, or None to leave it."""


class EventNotCopiedYet(BadRequestError, NotCopiedYet):
    """The ticket has an event this service has no copy of yet (its ``event.created`` is on its way): worth a
    short wait for the copy, then "not on sale yet" (nothing says the sale is open)."""

    default_message = NOT_ON_SALE_MESSAGE

    def __init__(self, event_id: uuid.UUID) -> None:
        super().__init__()
        self.copy_key = event_id


class NotAdmittedYet(ForbiddenError, NotCopiedYet):
    """The event's sale goes through the waiting room and the buyer is not admitted now: worth a short wait for
    an admission on its way (the buyer orders the moment the queue lets them out), then 403."""

    default_message = WAITING_ROOM_MESSAGE

    def __init__(self, event_id: uuid.UUID, buyer: uuid.UUID) -> None:
        super().__init__()
        self.copy_key = admission_key(event_id, buyer)


def orderable_ticket(
    ticket: Ticket | None,
    *,
    buyer: uuid.UUID,
    held: bool,
    sale: EventSale | None = None,
    now: datetime | None = None,
) -> Ticket:
    """The ticket, if ``buyer`` may order it at ``now``; checked in this order: 404 when there is no such ticket;
    400 when it is the buyer's own; for a ticket of an event, the rules of its ``sale`` (:func:`check_sale`);
    400 when an active order ``held`` it. A ticket of no event ignores ``sale``."""
    if ticket is None:
        raise NotFoundError(TICKET_NOT_FOUND_MESSAGE)
    if ticket.user_id == buyer:
        raise BadRequestError(OWN_TICKET_MESSAGE)
    if ticket.event_id is not None:
        check_sale(ticket.event_id, sale, buyer=buyer, now=now or utcnow())
    if held:
        raise BadRequestError(RESERVED_MESSAGE)
    return ticket


def check_sale(event_id: uuid.UUID, sale: EventSale | None, *, buyer: uuid.UUID, now: datetime) -> None:
    """Whether ``buyer`` may order a ticket of the event at ``now``, checked in this order: no copy of the event
    yet: :class:`EventNotCopiedYet` (400 "not on sale yet", after a wait); its sale opens later: 400; a waiting
    room the buyer is not admitted from now: :class:`NotAdmittedYet` (403, after a wait); the buyer holds or
    bought ``max_per_buyer`` of its tickets already: 400."""
    event = sale.event if sale is not None else None
    if sale is None or event is None:
        raise EventNotCopiedYet(event_id)
    if event.on_sale_at > now:
        raise BadRequestError(NOT_ON_SALE_MESSAGE)
    if event.waiting_room and not admitted(sale.admitted_until, now):
        raise NotAdmittedYet(event_id, buyer)
    if sale.holds >= event.max_per_buyer:
        raise BadRequestError(max_per_buyer_message(event.max_per_buyer))


def admitted(admitted_until: datetime | None, now: datetime) -> bool:
    """Admitted from the waiting room at ``now``: an admission that ends later."""
    return admitted_until is not None and now < admitted_until


def max_per_buyer_message(limit: int) -> str:
    return f"You may buy at most {limit} ticket{'' if limit == 1 else 's'} of this event"


def admission_key(event_id: uuid.UUID, buyer: uuid.UUID) -> uuid.UUID:
    """The key an order waiting for the buyer's admission to the event waits under (``copy_waits``)."""
    return uuid.uuid5(event_id, buyer.hex)


def buyer_event_lock_key(buyer: uuid.UUID, event_id: uuid.UUID) -> int:
    """The advisory lock (a signed 64-bit key) that places one buyer's orders of one event one at a time. Two
    pairs sharing a key (one chance in 2^64) only take turns."""
    digest = hashlib.blake2b(b"orders/buyer-at-event/" + buyer.bytes + event_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


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


class Versioned(Protocol):
    """An event about a copied entity (a ticket, an event): its id and version."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def version(self) -> int: ...


class VersionMet(Protocol):
    """An update as the statement applying it met its copy: the copy's version before (None: no copy)."""

    @property
    def version(self) -> int: ...

    @property
    def copy_version(self) -> int | None: ...


V = TypeVar("V", bound=Versioned)


def first_creation_of_each(events: Iterable[V]) -> list[V]:
    """The creations to insert (of tickets, or of events), in id order: an entity created twice keeps its first
    creation (as one by one), and batches inserting the same rows lock them in one order (they wait instead of
    deadlocking)."""
    first: dict[uuid.UUID, V] = {}
    for event in events:
        first.setdefault(event.id, event)
    return sorted(first.values(), key=lambda event: event.id)


def first_of_each_version(events: Iterable[V]) -> list[V]:
    """The updates to apply (of tickets, or of events): one event per (entity, version), the first, as one by
    one."""
    first: dict[tuple[uuid.UUID, int], V] = {}
    for event in events:
        first.setdefault((event.id, event.version), event)
    return list(first.values())


def ensure_none_ahead(outcomes: Iterable[VersionMet]) -> None:
    """Accept updates that were their copy's next version (applied) or behind it (already applied, no effect);
    raise ``NotYet`` when any is ahead of its copy, or its copy does not exist yet: the whole transaction must
    roll back and the events come back later."""
    for outcome in outcomes:
        is_next_version(outcome.copy_version, outcome.version)


def latest_admission_of_each_buyer(admissions: Iterable[BuyerAdmitted]) -> list[BuyerAdmitted]:
    """The admissions to record: per (event, buyer) the one that ends last (a later admission wins, whatever the
    order of arrival), in (event, buyer) order so that batches lock the same rows in one order."""
    latest: dict[tuple[uuid.UUID, uuid.UUID], BuyerAdmitted] = {}
    for admission in admissions:
        key = (admission.event_id, admission.user_id)
        kept = latest.get(key)
        if kept is None or admission.admitted_until > kept.admitted_until:
            latest[key] = admission
    return [latest[key] for key in sorted(latest)]
