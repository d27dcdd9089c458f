"""Event listeners of the orders service: the ticket copy, expiries and charges."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from ticketing_common.db import UnitOfWork
from ticketing_common.events import (
    ChargeCreated,
    Listener,
    OrderExpired,
    TicketCreated,
    TicketUpdated,
)
from ticketing_orders import service


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
    """The service's listeners: they need no state of the app (the runner hands each event its unit of work)."""
    return [TicketCreatedListener(), TicketUpdatedListener(), OrderExpiredListener(), ChargeCreatedListener()]
