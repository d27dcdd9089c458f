"""Event listeners of the payments service: its copies of orders (to charge them) and of users' emails (for the
receipt), and the refund of an order cancelled after this service charged it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from ticketing_common.db import UnitOfWork
from ticketing_common.events import (
    Listener,
    OrderCancelled,
    OrderCreated,
    UserCreated,
    UserUpdated,
)
from ticketing_payments.order_waits import OrderCopyWaits
from ticketing_payments.service import (
    copy_cancelled_order,
    copy_created_order,
    copy_created_orders,
    copy_created_user,
    copy_updated_user,
    refund_payment,
)
from ticketing_payments.stripe_gateway import StripeGateway


class OrderCreatedListener(Listener[OrderCreated]):
    event = OrderCreated

    def __init__(self, waits: OrderCopyWaits) -> None:
        self.waits = waits

    async def handle(self, event: OrderCreated, uow: UnitOfWork) -> None:
        await copy_created_order(uow=uow, event=event)

    async def handle_batch(self, events: Sequence[OrderCreated], uow: UnitOfWork) -> None:
        # Every payment of a new order waits on this copy: one statement for the whole batch.
        await copy_created_orders(uow=uow, events=list(events))

    async def committed(self, event: OrderCreated) -> None:
        await self.waits.copied(event.id)  # the payments waiting for this copy, on every replica


class OrderCancelledListener(Listener[OrderCancelled]):
    """Cancels the copy; refunds the order's payment if it was paid here before the orders service cancelled it.

    The refund happens inside the event's transaction: if Stripe is unreachable the transaction rolls back and
    the event comes back later (the refund's idempotency key makes the retry safe).
    """

    event = OrderCancelled

    def __init__(self, stripe: StripeGateway) -> None:
        self.stripe = stripe

    async def handle(self, event: OrderCancelled, uow: UnitOfWork) -> None:
        payment = await copy_cancelled_order(uow=uow, event=event)
        if payment is not None:
            await refund_payment(uow=uow, stripe=self.stripe, payment=payment)


class UserCreatedListener(Listener[UserCreated]):
    event = UserCreated

    async def handle(self, event: UserCreated, uow: UnitOfWork) -> None:
        await copy_created_user(uow=uow, event=event)


class UserUpdatedListener(Listener[UserUpdated]):
    event = UserUpdated

    async def handle(self, event: UserUpdated, uow: UnitOfWork) -> None:
        await copy_updated_user(uow=uow, event=event)


def listeners(app: FastAPI) -> Sequence[Listener[Any]]:
    return [
        OrderCreatedListener(app.state.order_copy_waits),
        OrderCancelledListener(app.state.stripe),
        UserCreatedListener(),
        UserUpdatedListener(),
    ]
