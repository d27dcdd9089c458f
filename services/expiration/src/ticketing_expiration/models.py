"""Tables of the expiration service."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common.db import TYPE_ANNOTATION_MAP, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class OrderExpiry(Base):
    """What the service decided for one order, keyed by the order so each order is scheduled at most once.

    Written by ``order.created`` (``expires_at`` and the outbox id of its schedule message) or, when
    ``order.cancelled`` arrives first, as a tombstone (``cancelled_at`` only) that keeps a late
    ``order.created`` from scheduling anything. The timers live in JetStream (durable) and in the memory of the
    replica that scheduled the order (punctual), not here; a timer that fires reads its row, locked, to skip an
    order cancelled meanwhile. Only a starting replica scans it, for the pending expiries it re-arms timers for,
    through a partial index that holds just those.
    """

    __tablename__ = "order_expiries"
    __table_args__ = (
        Index(
            "ix_order_expiries_pending",
            "expires_at",
            postgresql_where=text("cancelled_at IS NULL AND schedule_event_id IS NOT NULL"),
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    expires_at: Mapped[datetime | None]
    schedule_event_id: Mapped[uuid.UUID | None]
    cancelled_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())
