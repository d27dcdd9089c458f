"""The event bus: catalogue, transactional outbox, publisher and listeners over NATS JetStream."""

from ticketing_common.events.catalogue import (
    BuyerAdmitted,
    ChargeCreated,
    Event,
    EventCreated,
    EventUpdated,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderStatus,
    SessionRevoked,
    Subject,
    TicketCreated,
    TicketUpdated,
    UserCreated,
    UserUpdated,
)
from ticketing_common.events.listener import Listener, NotYet, is_next_version

__all__ = [
    "BuyerAdmitted",
    "ChargeCreated",
    "Event",
    "EventCreated",
    "EventUpdated",
    "Listener",
    "NotYet",
    "OrderCancelled",
    "OrderCreated",
    "OrderExpired",
    "OrderStatus",
    "SessionRevoked",
    "Subject",
    "TicketCreated",
    "TicketUpdated",
    "UserCreated",
    "UserUpdated",
    "is_next_version",
]
