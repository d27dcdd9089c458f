"""The event bus: catalogue, transactional outbox, relay and listeners over NATS JetStream."""

from ticketing_common.events.catalogue import (
    ChargeCreated,
    Event,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderStatus,
    Subject,
    TicketCreated,
    TicketUpdated,
    UserCreated,
    UserUpdated,
)
from ticketing_common.events.listener import EventContext, Listener, NotYet, is_next_version
from ticketing_common.events.publisher import publish

__all__ = [
    "ChargeCreated",
    "Event",
    "EventContext",
    "Listener",
    "NotYet",
    "OrderCancelled",
    "OrderCreated",
    "OrderExpired",
    "OrderStatus",
    "Subject",
    "TicketCreated",
    "TicketUpdated",
    "UserCreated",
    "UserUpdated",
    "is_next_version",
    "publish",
]
