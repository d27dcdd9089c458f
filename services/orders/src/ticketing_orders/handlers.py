"""Event listeners of the orders service: the ticket copy, expiries and charges."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common.config import ServiceSettings
from ticketing_common.events import (
    ChargeCreated,
    Event,
    EventContext,
    Listener,
    OrderExpired,
    TicketCreated,
    TicketUpdated,
)
from ticketing_orders import service


class TicketCreatedListener(Listener[TicketCreated]):
    """Keeps a copy of every ticket on sale (version 0); a repeated creation changes nothing."""

    event = TicketCreated

    async def handle(self, event: TicketCreated, session: AsyncSession, context: EventContext) -> None:
        await service.copy_ticket(session=session, event=event)


class TicketUpdatedListener(Listener[TicketUpdated]):
    """Follows the ticket's versions one by one: ahead waits ("not yet"), behind is ignored."""

    event = TicketUpdated

    async def handle(self, event: TicketUpdated, session: AsyncSession, context: EventContext) -> None:
        await service.update_ticket_copy(session=session, event=event)


class OrderExpiredListener(Listener[OrderExpired]):
    """Cancels an unpaid order when its time is up (``order.cancelled`` frees the ticket elsewhere)."""

    event = OrderExpired

    async def handle(self, event: OrderExpired, session: AsyncSession, context: EventContext) -> None:
        await service.expire_order(session=session, order_id=event.order_id)


class ChargeCreatedListener(Listener[ChargeCreated]):
    """Marks the order paid; a charge that cannot pay its order is recorded as needing a refund."""

    event = ChargeCreated

    async def handle(self, event: ChargeCreated, session: AsyncSession, context: EventContext) -> None:
        await service.record_charge(session=session, charge=event)


def listeners(settings: ServiceSettings) -> list[Listener[Event]]:
    return [TicketCreatedListener(), TicketUpdatedListener(), OrderExpiredListener(), ChargeCreatedListener()]
