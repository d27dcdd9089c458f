"""Tables of the tickets service: the tickets it sells and the orders it has seen cancelled."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, Numeric, String, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common.db import TYPE_ANNOTATION_MAP, service_metadata

MAX_TITLE_LENGTH = 200
MAX_PRICE = Decimal("1000000")


class Base(DeclarativeBase):
    metadata = service_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class Ticket(Base):
    """A ticket for sale. ``order_id`` is set while an order holds it; ``version`` counts every change."""

    __tablename__ = "tickets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(MAX_TITLE_LENGTH))
    # Exact money: NUMERIC(9, 2) holds up to 9,999,999.99, the check keeps it within the API's range.
    price: Mapped[Decimal] = mapped_column(Numeric(9, 2))
    user_id: Mapped[uuid.UUID]
    order_id: Mapped[uuid.UUID | None]
    version: Mapped[int] = mapped_column(server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint("price > 0 AND price <= 1000000", name="price_range"),
        CheckConstraint("version >= 0", name="version_not_negative"),
        CheckConstraint("char_length(title) BETWEEN 1 AND 200", name="title_length"),
        # The public listing: tickets for sale, newest first, read page by page with a keyset cursor.
        Index(
            "ix_tickets_available",
            created_at.desc(),
            id.desc(),
            postgresql_where=text("order_id IS NULL"),
        ),
    )


class CancelledOrder(Base):
    """Tombstone of a cancelled order, so a late ``order.created`` of it cannot lock its ticket again."""

    __tablename__ = "cancelled_orders"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    ticket_id: Mapped[uuid.UUID]
    cancelled_at: Mapped[datetime] = mapped_column(server_default=func.now())
