"""Public JSON of the orders API (camelCase), separate from the tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import field_serializer, field_validator, model_validator

from ticketing_common.events import OrderStatus
from ticketing_common.schemas import CamelModel, Money, RequestBody

TICKET_ID_MESSAGE = "TicketId must be provided"


class OrderIn(RequestBody):
    """``POST /api/orders``: the ticket to reserve."""

    ticket_id: uuid.UUID

    @model_validator(mode="before")
    @classmethod
    def _missing_ticket_id_is_checked_too(cls, data: Any) -> Any:
        # A missing ticketId gets the same message as a malformed one (not pydantic's "ticketId is required").
        if isinstance(data, dict) and "ticketId" not in data and "ticket_id" not in data:
            return {**data, "ticketId": None}
        return data

    @field_validator("ticket_id", mode="before")
    @classmethod
    def _ticket_id_is_an_id(cls, value: Any) -> uuid.UUID:
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str):
            try:
                return uuid.UUID(value.strip())
            except ValueError:
                pass
        raise ValueError(TICKET_ID_MESSAGE)


class OrderTicketOut(CamelModel):
    id: uuid.UUID
    title: str
    price: Money
    version: int


class OrderOut(CamelModel):
    """An order as its buyer sees it."""

    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    expires_at: datetime
    version: int
    ticket: OrderTicketOut

    @field_serializer("expires_at", when_used="json")
    def _utc(self, value: datetime) -> str:
        # ISO 8601 in UTC with a "Z", whatever the time zone the database session used.
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
