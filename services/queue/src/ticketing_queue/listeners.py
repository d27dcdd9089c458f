"""Event listeners of the queue service: the rooms follow the events tickets publishes, and a room draws when
its schedule fires."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from ticketing_common.db import UnitOfWork
from ticketing_common.events import EventCreated, EventUpdated, Listener
from ticketing_common.events.catalogue import DrawDue
from ticketing_queue import service


class EventCreatedListener(Listener[EventCreated]):
    """Creates the event's room (its secret seed; the draw's schedule for a waiting room); a repeated creation
    changes nothing."""

    event = EventCreated

    async def handle(self, event: EventCreated, uow: UnitOfWork) -> None:
        await service.copy_created_event(uow=uow, event=event)


class EventUpdatedListener(Listener[EventUpdated]):
    """Follows the event's versions one by one (ahead waits, behind is ignored); a new on-sale time of a room not
    drawn yet replaces its draw's schedule."""

    event = EventUpdated

    async def handle(self, event: EventUpdated, uow: UnitOfWork) -> None:
        await service.copy_updated_event(uow=uow, event=event)


class DrawDueListener(Listener[DrawDue]):
    """Draws the room when nats-server fires its schedule at the on-sale time: exactly once."""

    event = DrawDue

    async def handle(self, event: DrawDue, uow: UnitOfWork) -> None:
        await service.draw_room(uow=uow, due=event)


def listeners(app: FastAPI) -> Sequence[Listener[Any]]:
    """The service's listeners: they need no state of the app (the runner hands each event its unit of work)."""
    return [EventCreatedListener(), EventUpdatedListener(), DrawDueListener()]
