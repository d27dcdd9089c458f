"""ORM mappings of the messaging tables every service's first migration creates."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from ticketing_common.db import MessagingBase

OUTBOX_NOTIFY_CHANNEL = "outbox"


class OutboxRow(MessagingBase):
    """An event waiting to be published (``sent_at`` is null) or already published."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    subject: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")


class ProcessedEvent(MessagingBase):
    """The inbox: which consumer has applied which event, written in the handler's own transaction."""

    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ParkedMessage(MessagingBase):
    """A message that failed too often; kept for a human, never silently dropped."""

    __tablename__ = "parked_messages"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    error: Mapped[str] = mapped_column(Text)
    deliveries: Mapped[int] = mapped_column(Integer)
    parked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
