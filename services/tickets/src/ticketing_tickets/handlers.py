"""Event listeners of the tickets service: orders hold and release tickets.

Redelivery of the same event is absorbed by the shared inbox; the handlers themselves are also idempotent
per order (a re-published event with a new id changes nothing twice) and tolerate ``order.cancelled``
arriving before ``order.created`` of the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common.config import ServiceSettings
from ticketing_common.events import EventContext, Listener, OrderCancelled, OrderCreated
from ticketing_tickets.service import release_for_order, reserve_for_order


class OrderCreatedListener(Listener[OrderCreated]):
    """The order holds its ticket: set ``orderId``, bump the version, publish ``ticket.updated``."""

    event = OrderCreated

    async def handle(self, event: OrderCreated, session: AsyncSession, context: EventContext) -> None:
        await reserve_for_order(session=session, order_id=event.id, ticket_id=event.ticket.id)


class OrderCancelledListener(Listener[OrderCancelled]):
    """The order lets go: clear ``orderId`` if it is this order's, bump the version, publish ``ticket.updated``."""

    event = OrderCancelled

    async def handle(self, event: OrderCancelled, session: AsyncSession, context: EventContext) -> None:
        await release_for_order(session=session, order_id=event.id, ticket_id=event.ticket.id)


def listeners(settings: ServiceSettings) -> Sequence[Listener[Any]]:
    return [OrderCreatedListener(), OrderCancelledListener()]
