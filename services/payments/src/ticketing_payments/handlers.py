"""Event listeners of the payments service: its copies of orders (to charge them) and of users' emails (for the
receipt). Redeliveries are absorbed by the shared inbox; versions keep replicas and reordered events in step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common.config import ServiceSettings
from ticketing_common.events import (
    EventContext,
    Listener,
    OrderCancelled,
    OrderCreated,
    UserCreated,
    UserUpdated,
)
from ticketing_payments.service import (
    copy_cancelled_order,
    copy_created_order,
    copy_created_user,
    copy_updated_user,
)


class OrderCreatedListener(Listener[OrderCreated]):
    event = OrderCreated

    async def handle(self, event: OrderCreated, session: AsyncSession, context: EventContext) -> None:
        await copy_created_order(session=session, event=event)


class OrderCancelledListener(Listener[OrderCancelled]):
    event = OrderCancelled

    async def handle(self, event: OrderCancelled, session: AsyncSession, context: EventContext) -> None:
        await copy_cancelled_order(session=session, event=event)


class UserCreatedListener(Listener[UserCreated]):
    event = UserCreated

    async def handle(self, event: UserCreated, session: AsyncSession, context: EventContext) -> None:
        await copy_created_user(session=session, event=event)


class UserUpdatedListener(Listener[UserUpdated]):
    event = UserUpdated

    async def handle(self, event: UserUpdated, session: AsyncSession, context: EventContext) -> None:
        await copy_updated_user(session=session, event=event)


def listeners(settings: ServiceSettings) -> Sequence[Listener[Any]]:
    return [OrderCreatedListener(), OrderCancelledListener(), UserCreatedListener(), UserUpdatedListener()]
