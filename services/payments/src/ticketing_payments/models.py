"""Tables of the payments service: its copies of orders and of users' emails, and the payments it made."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common.db import TYPE_ANNOTATION_MAP, service_metadata

EMAIL_MAX_LENGTH = 320


class Base(DeclarativeBase):
    metadata = service_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class Order(Base):
    """The orders service's order as ``order.created`` / ``order.cancelled`` describe it (``version`` is theirs).

    ``status`` also turns ``complete`` here when this service records the order's payment. ``charge_attempt``
    numbers the Stripe idempotency key of the next charge: it moves on only when Stripe has definitively said no
    (a decline), so every retry of an attempt whose outcome is unknown reuses the same key.
    """

    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(32))
    price: Mapped[Decimal] = mapped_column(Numeric(9, 2))
    expires_at: Mapped[datetime]
    version: Mapped[int]
    charge_attempt: Mapped[int] = mapped_column(default=0, server_default="0")

    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("charge_attempt >= 0", name="charge_attempt_not_negative"),
    )


class User(Base):
    """A user's email (for Stripe's receipt), from ``user.created`` / ``user.updated``."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    version: Mapped[int]


class Payment(Base):
    """A successful charge of an order: at most one per order (``uq_payments_order_id``); refunded if the order
    was cancelled after all."""

    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), unique=True)
    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Set when the order was cancelled after this payment (the buyer cancelled, or the order expired, before the
    # orders service heard of the charge): the money went back through a Stripe refund.
    refund_id: Mapped[str | None] = mapped_column(String(255))
    refunded_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)


PAYMENTS_ORDER_UNIQUE = "uq_payments_order_id"
