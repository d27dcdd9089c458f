"""The event catalogue: every subject and its payload, in one place.

The NATS subject is exactly the subject name; the message body is the payload as camelCase JSON.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel

from ticketing_common.schemas import CamelModel, Money


class Subject(StrEnum):
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    TICKET_CREATED = "ticket.created"
    TICKET_UPDATED = "ticket.updated"
    ORDER_CREATED = "order.created"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_EXPIRED = "order.expired"
    CHARGE_CREATED = "charge.created"
    SESSION_REVOKED = "session.revoked"
    EVENT_CREATED = "event.created"
    EVENT_UPDATED = "event.updated"
    BUYER_ADMITTED = "queue.admitted"
    DRAW_DUE = "queue.draw-due"


class OrderStatus(StrEnum):
    CREATED = "created"
    CANCELLED = "cancelled"
    COMPLETE = "complete"


class Event(CamelModel):
    """A payload of the catalogue; ``subject`` names where it is published."""

    subject: ClassVar[Subject]


class UserCreated(Event):
    subject = Subject.USER_CREATED
    id: uuid.UUID
    email: str
    version: int


class UserUpdated(Event):
    subject = Subject.USER_UPDATED
    id: uuid.UUID
    email: str
    version: int


class TicketCreated(Event):
    subject = Subject.TICKET_CREATED
    id: uuid.UUID
    title: str
    price: Money
    user_id: uuid.UUID
    version: int
    event_id: uuid.UUID | None = None


class TicketUpdated(Event):
    subject = Subject.TICKET_UPDATED
    id: uuid.UUID
    title: str
    price: Money
    user_id: uuid.UUID
    order_id: uuid.UUID | None
    version: int
    event_id: uuid.UUID | None = None


class _EventFields(Event):
    """What ``event.created`` and ``event.updated`` say about an event (a show tickets are sold for, owned by
    tickets). ``waitingRoom``: its sale opens through the queue's waiting room (``onSaleAt`` was in the future when
    it was created); decided once, by tickets."""

    id: uuid.UUID
    name: str
    venue: str
    starts_at: datetime
    on_sale_at: datetime
    max_per_buyer: int
    waiting_room: bool
    user_id: uuid.UUID
    version: int


class EventCreated(_EventFields):
    subject = Subject.EVENT_CREATED


class EventUpdated(_EventFields):
    subject = Subject.EVENT_UPDATED


class BuyerAdmitted(Event):
    """The queue let a buyer out of an event's waiting room: they may order its tickets until ``admittedUntil``."""

    subject = Subject.BUYER_ADMITTED
    event_id: uuid.UUID
    user_id: uuid.UUID
    position: int
    admitted_until: datetime


class DrawDue(Event):
    """An event's waiting room is due to draw at ``onSaleAt``: fired by nats-server from the JetStream schedule the
    queue service keeps on ``queue.draws.<eventId>`` (one subject per event, replaced when ``onSaleAt`` moves);
    only the queue service listens."""

    subject = Subject.DRAW_DUE
    event_id: uuid.UUID
    on_sale_at: datetime


class OrderTicket(CamelModel):
    id: uuid.UUID
    price: Money


class OrderCreated(Event):
    subject = Subject.ORDER_CREATED
    id: uuid.UUID
    status: OrderStatus
    user_id: uuid.UUID
    expires_at: datetime
    version: int
    ticket: OrderTicket


class TicketRef(CamelModel):
    id: uuid.UUID


class OrderCancelled(Event):
    subject = Subject.ORDER_CANCELLED
    id: uuid.UUID
    version: int
    ticket: TicketRef


class OrderExpired(Event):
    subject = Subject.ORDER_EXPIRED
    order_id: uuid.UUID


class ChargeCreated(Event):
    subject = Subject.CHARGE_CREATED
    id: uuid.UUID
    order_id: uuid.UUID
    stripe_id: str
    amount: int
    currency: str


def encode_text(event: BaseModel) -> str:
    """The event's message body as text (camelCase JSON)."""
    return event.model_dump_json(by_alias=True)


def encode(event: BaseModel) -> bytes:
    return encode_text(event).encode()


class SessionRevoked(Event):
    """Sessions of a user that every service must refuse from now on: the one named, or (``sessionId`` null)
    every one issued before ``revokedBefore``."""

    subject = Subject.SESSION_REVOKED
    user_id: uuid.UUID
    session_id: uuid.UUID | None
    revoked_before: datetime
