"""Public JSON of the tickets API (camelCase), separate from the tables."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import Field, field_validator

from ticketing_common.schemas import CamelModel, Money, RequestBody, has_control_characters

# The API's rules; the migration's CHECK constraints hold the database to the same.
MAX_TITLE_LENGTH = 200
MAX_PRICE = Decimal("1000000")
CENT = Decimal("0.01")
PRICE_MESSAGE = "Price must be greater than 0"
TITLE_MESSAGE = "Title is required"


def clean_title(value: Any) -> str:
    """The title trimmed, or ValueError with the message the client sees."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(TITLE_MESSAGE)
    title = value.strip()
    if len(title) > MAX_TITLE_LENGTH:
        raise ValueError(f"Title must be at most {MAX_TITLE_LENGTH} characters")
    if has_control_characters(title):
        raise ValueError("Title must not contain control characters")
    return title


def clean_price(value: Any) -> Decimal:
    """The price as an exact Decimal with two decimals, or ValueError with the message the client sees.

    Request bodies are parsed with ``Decimal`` for JSON numbers (see ``routing``), so nothing here ever went
    through a float; a float is still accepted (e.g. from Python callers) through its shortest repr.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(PRICE_MESSAGE)
    try:
        price = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise ValueError(PRICE_MESSAGE) from None
    if not price.is_finite() or price <= 0:
        raise ValueError(PRICE_MESSAGE)
    if price > MAX_PRICE:
        raise ValueError("Price must be at most 1000000")
    if price != price.quantize(CENT):
        raise ValueError("Price must have at most two decimals")
    return price.quantize(CENT)


class TicketIn(RequestBody):
    """Body of ``POST /api/tickets``."""

    # Defaults of None so a missing field gets the same message as an empty one (not pydantic's "missing").
    title: str = Field(default=None, validate_default=True)
    price: Money = Field(default=None, validate_default=True)

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, value: Any) -> str:
        return clean_title(value)

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Decimal:
        return clean_price(value)


class TicketUpdate(TicketIn):
    """Body of ``PUT /api/tickets/:id``; ``version``, when given, must be the ticket's current version."""

    version: int | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("Version must be a whole number of 0 or more")
        return value


class TicketOut(CamelModel):
    """A ticket as the API shows it."""

    id: uuid.UUID
    title: str
    price: Money
    user_id: uuid.UUID
    order_id: uuid.UUID | None
    version: int


class TicketPage(CamelModel):
    """One page of the listing; ``next`` is the cursor of the following page, null on the last one."""

    tickets: list[TicketOut]
    next: str | None
