"""Event listeners of the tickets service: orders hold and release tickets.

The listeners are idempotent per order (a re-published event with a new id changes nothing twice) and tolerate
``order.cancelled`` arriving before ``order.created`` of the same order.

Both are on the hot path of a sale, so a batch is applied set-based (two statements whatever its size); a batch
that is not that simple raises ``NotInOneGo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from ticketing_common.db import UnitOfWork
from ticketing_common.events import Listener, OrderCancelled, OrderCreated
from ticketing_tickets.service import hold_for_order, hold_for_orders, release_for_order, release_for_orders


class OrderCreatedListener(Listener[OrderCreated]):
    """The order holds its ticket: set ``orderId``, bump the version, publish ``ticket.updated``."""

    event = OrderCreated

    async def handle(self, event: OrderCreated, uow: UnitOfWork) -> None:
        await hold_for_order(uow=uow, order_id=event.id, ticket_id=event.ticket.id)

    async def handle_batch(self, events: Sequence[OrderCreated], uow: UnitOfWork) -> None:
        await hold_for_orders(uow=uow, orders=[(event.id, event.ticket.id) for event in events])


class OrderCancelledListener(Listener[OrderCancelled]):
    """The order lets go: clear ``orderId`` if it is this order's, bump the version, publish ``ticket.updated``."""

    event = OrderCancelled

    async def handle(self, event: OrderCancelled, uow: UnitOfWork) -> None:
        await release_for_order(uow=uow, order_id=event.id, ticket_id=event.ticket.id)

    async def handle_batch(self, events: Sequence[OrderCancelled], uow: UnitOfWork) -> None:
        await release_for_orders(uow=uow, orders=[(event.id, event.ticket.id) for event in events])


def listeners(app: FastAPI) -> Sequence[Listener[Any]]:
    return [OrderCreatedListener(), OrderCancelledListener()]
