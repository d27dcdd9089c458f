"""Event listeners of the orders service: the copies of tickets, events and admissions, expiries and charges."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from ticketing_common.db import UnitOfWork
from ticketing_common.events import (
    BuyerAdmitted,
    ChargeCreated,
    EventCreated,
    EventUpdated,
    Listener,
    OrderExpired,
    TicketCreated,
    TicketUpdated,
)
from ticketing_orders import domain, service
from ticketing_orders.sale_waits import SaleCopyWaits


class TicketCreatedListener(Listener[TicketCreated]):
    """Keeps a copy of every ticket on sale (version 0); a repeated creation changes nothing."""

    event = TicketCreated

    async def handle(self, event: TicketCreated, uow: UnitOfWork) -> None:
        await service.copy_created_tickets(uow=uow, events=[event])

    async def handle_batch(self, events: Sequence[TicketCreated], uow: UnitOfWork) -> None:
        await service.copy_created_tickets(uow=uow, events=list(events))


class TicketUpdatedListener(Listener[TicketUpdated]):
    """Follows the ticket's versions one by one: ahead waits ("not yet"), behind is ignored. A batch with any
    event ahead raises ``NotYet`` as a whole and is replayed one event at a time."""

    event = TicketUpdated

    async def handle(self, event: TicketUpdated, uow: UnitOfWork) -> None:
        await service.copy_updated_tickets(uow=uow, events=[event])

    async def handle_batch(self, events: Sequence[TicketUpdated], uow: UnitOfWork) -> None:
        await service.copy_updated_tickets(uow=uow, events=list(events))


class EventCreatedListener(Listener[EventCreated]):
    """Keeps a copy of every event's sale (version 0); a repeated creation changes nothing. Once committed, wakes
    the orders waiting for that copy on every replica."""

    event = EventCreated

    def __init__(self, waits: SaleCopyWaits) -> None:
        self.waits = waits

    async def handle(self, event: EventCreated, uow: UnitOfWork) -> None:
        await service.copy_created_events(uow=uow, events=[event])

    async def handle_batch(self, events: Sequence[EventCreated], uow: UnitOfWork) -> None:
        await service.copy_created_events(uow=uow, events=list(events))

    async def committed(self, event: EventCreated) -> None:
        await self.waits.copied(event.id)


class EventUpdatedListener(Listener[EventUpdated]):
    """Follows the event's versions one by one, as the ticket copy does."""

    event = EventUpdated

    async def handle(self, event: EventUpdated, uow: UnitOfWork) -> None:
        await service.copy_updated_events(uow=uow, events=[event])

    async def handle_batch(self, events: Sequence[EventUpdated], uow: UnitOfWork) -> None:
        await service.copy_updated_events(uow=uow, events=list(events))


class BuyerAdmittedListener(Listener[BuyerAdmitted]):
    """Keeps each buyer's latest admission to each event. Once committed, wakes the orders waiting for it on every
    replica (the buyer orders the moment the queue lets them out)."""

    event = BuyerAdmitted

    def __init__(self, waits: SaleCopyWaits) -> None:
        self.waits = waits

    async def handle(self, event: BuyerAdmitted, uow: UnitOfWork) -> None:
        await service.admit_buyers(uow=uow, admissions=[event])

    async def handle_batch(self, events: Sequence[BuyerAdmitted], uow: UnitOfWork) -> None:
        await service.admit_buyers(uow=uow, admissions=list(events))

    async def committed(self, event: BuyerAdmitted) -> None:
        await self.waits.copied(domain.admission_key(event.event_id, event.user_id))


class OrderExpiredListener(Listener[OrderExpired]):
    """Cancels an unpaid order when its time is up (``order.cancelled`` frees the ticket elsewhere)."""

    event = OrderExpired

    async def handle(self, event: OrderExpired, uow: UnitOfWork) -> None:
        await service.expire_order(uow=uow, order_id=event.order_id)


class ChargeCreatedListener(Listener[ChargeCreated]):
    """Marks the order paid; a charge that cannot pay its order is recorded as needing a refund."""

    event = ChargeCreated

    async def handle(self, event: ChargeCreated, uow: UnitOfWork) -> None:
        await service.record_charge(uow=uow, charge=event)


def listeners(app: FastAPI) -> Sequence[Listener[Any]]:
    """The service's listeners; the copies that orders wait for announce themselves through ``app.state.sale_waits``
    (the runner hands each event its unit of work)."""
    waits: SaleCopyWaits = app.state.sale_waits
    return [
        TicketCreatedListener(),
        TicketUpdatedListener(),
        EventCreatedListener(waits),
        EventUpdatedListener(),
        BuyerAdmittedListener(waits),
        OrderExpiredListener(),
        ChargeCreatedListener(),
    ]
