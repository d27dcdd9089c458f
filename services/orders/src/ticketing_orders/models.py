"""Tables of the orders service: its copy of the tickets, the orders, and the charges it was told about."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ticketing_common.db import TYPE_ANNOTATION_MAP, service_metadata
from ticketing_common.events.catalogue import ACTIVE_ORDER_STATUSES, OrderStatus

ACTIVE_ORDER_INDEX = "uq_orders_active_ticket"
"""The partial unique index that lets at most one active order hold a ticket."""

_STATUSES = ", ".join(f"'{status.value}'" for status in OrderStatus)
_ACTIVE_STATUSES = ", ".join(f"'{status.value}'" for status in ACTIVE_ORDER_STATUSES)


class Base(DeclarativeBase):
    metadata = service_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class Ticket(Base):
    """The replica of a ticket of the tickets service, fed by ``ticket.created`` / ``ticket.updated``.

    ``version`` is the version of the last event applied; ``user_id`` is the seller.
    """

    __tablename__ = "tickets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    price: Mapped[Decimal] = mapped_column(Numeric(9, 2))
    user_id: Mapped[uuid.UUID]
    version: Mapped[int]

    __table_args__ = (CheckConstraint("version >= 0", name="version_not_negative"),)


class Order(Base):
    """A buyer's order of one ticket; ``version`` counts every change of status."""

    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(server_default=text("0"))
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    ticket: Mapped[Ticket] = relationship(lazy="raise")

    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="status_known"),
        CheckConstraint("version >= 0", name="version_not_negative"),
        # No double booking: the database itself refuses a second active order for a ticket, whatever
        # number of requests and replicas race for it.
        Index(ACTIVE_ORDER_INDEX, "ticket_id", unique=True, postgresql_where=text(f"status IN ({_ACTIVE_STATUSES})")),
        # "My orders, newest first".
        Index("ix_orders_user_created", "user_id", created_at.desc(), id.desc()),
    )


class Charge(Base):
    """A charge the payments service reported (``charge.created``), kept once per charge id.

    ``refund_reason`` is set when the charge did not pay an order (the order was cancelled, or was already
    paid by another charge): the money must go back, so the charge is kept and logged, never dropped.
    """

    __tablename__ = "charges"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    stripe_id: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(16))
    refund_reason: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        Index("ix_charges_order_id", "order_id"),
        # What an operator (or a future refund job) reads: the charges still to pay back.
        Index("ix_charges_refund_needed", "received_at", postgresql_where=text("refund_reason IS NOT NULL")),
    )
