"""Tables of the expiration service."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common.db import TYPE_ANNOTATION_MAP, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class OrderExpiry(Base):
    """What the service decided for one order, keyed by the order so each order is scheduled at most once.

    Written by ``order.created`` (``expires_at`` and the outbox id of its schedule message) or, when
    ``order.cancelled`` arrives first, as a tombstone (``cancelled_at`` only) that keeps a late
    ``order.created`` from scheduling anything. The timers themselves live in JetStream, not here: the service
    reads this table only by primary key.
    """

    __tablename__ = "order_expiries"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    expires_at: Mapped[datetime | None]
    schedule_event_id: Mapped[uuid.UUID | None]
    cancelled_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())
