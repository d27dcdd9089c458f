"""A tiny demo service that exercises the shared library end to end: it publishes ticket events through
the outbox and keeps a versioned copy of them through listeners, like the real services do."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from fastapi import APIRouter, FastAPI
from pydantic import Field

from ticketing_common import errors
from ticketing_common.app import DatabaseDep, create_app
from ticketing_common.auth import RequiredUser
from ticketing_common.config import ServiceSettings
from ticketing_common.db import UnitOfWork
from ticketing_common.events import Listener, TicketCreated, TicketUpdated, is_next_version
from ticketing_common.schemas import CamelModel, Money

MIGRATIONS = Path(__file__).parent / "demo_migrations"


class DemoSettings(ServiceSettings):
    service_name: str = "demo"


class TicketIn(CamelModel):
    title: str = Field(min_length=1)
    price: Money = Field(gt=0)
    user_id: uuid.UUID | None = None


router = APIRouter(prefix="/demo")


@router.post("/tickets", status_code=201)
async def create_ticket(body: TicketIn, db: DatabaseDep) -> dict[str, Any]:
    ticket_id = uuid.uuid4()
    async with db.unit_of_work() as uow:
        uow.publish(TicketCreated(id=ticket_id, title=body.title, price=body.price, user_id=uuid.uuid4(), version=0))
    return {"id": str(ticket_id)}


@router.get("/me")
async def me(user: RequiredUser) -> dict[str, Any]:
    return {"id": str(user.id), "email": user.email}


@router.get("/errors/{kind}")
async def raise_error(kind: str) -> None:
    if kind == "bad-request":
        raise errors.BadRequestError("Ticket is already reserved")
    if kind == "forbidden":
        raise errors.ForbiddenError()
    if kind == "not-found":
        raise errors.NotFoundError()
    if kind == "database":
        raise errors.DatabaseConnectionError()
    if kind == "field":
        raise errors.FieldError("email", "Email in use")
    if kind == "too-many":
        raise errors.TooManyRequestsError(retry_after=42)
    raise RuntimeError("secret internal detail /etc/passwd")


class InFlight:
    """How many "slow" events were being handled at once (the most seen)."""

    now = 0
    most = 0


class Committed:
    """The ticket ids whose ``ticket.created`` transaction the listener was told had committed, in order."""

    ids: ClassVar[list[uuid.UUID]] = []


class Transactions:
    """The transaction each ticket's copy was written in."""

    by_ticket: ClassVar[dict[uuid.UUID, int]] = {}


class TicketCreatedListener(Listener[TicketCreated]):
    event = TicketCreated

    async def committed(self, event: TicketCreated) -> None:
        Committed.ids.append(event.id)

    async def handle(self, event: TicketCreated, uow: UnitOfWork) -> None:
        if event.title == "poison":
            raise ValueError("cannot handle poison")
        if event.title == "slow":
            InFlight.now += 1
            InFlight.most = max(InFlight.most, InFlight.now)
            try:
                await asyncio.sleep(0.2)
            finally:
                InFlight.now -= 1
        await uow.conn.execute(
            "INSERT INTO ticket_copies (id, title, version) VALUES ($1, $2, $3)", event.id, event.title, event.version
        )
        Transactions.by_ticket[event.id] = await uow.conn.fetchval("SELECT txid_current()")


class TicketUpdatedListener(Listener[TicketUpdated]):
    event = TicketUpdated

    async def handle(self, event: TicketUpdated, uow: UnitOfWork) -> None:
        version = await uow.conn.fetchval("SELECT version FROM ticket_copies WHERE id = $1 FOR UPDATE", event.id)
        if is_next_version(version, event.version):
            await uow.conn.execute(
                "UPDATE ticket_copies SET title = $2, version = $3 WHERE id = $1", event.id, event.title, event.version
            )


def demo_listeners(_: ServiceSettings) -> list[Listener[Any]]:
    return [TicketCreatedListener(), TicketUpdatedListener()]


def build_demo_app(settings: DemoSettings) -> FastAPI:
    return create_app(settings, title="demo", routers=[router], listeners=demo_listeners)


def sample_updated(ticket_id: uuid.UUID, version: int, title: str) -> TicketUpdated:
    return TicketUpdated(
        id=ticket_id, title=title, price=Decimal("10"), user_id=uuid.uuid4(), order_id=None, version=version
    )
