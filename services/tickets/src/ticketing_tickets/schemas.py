"""Public JSON of the tickets API (camelCase), separate from the tables."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationInfo, field_serializer, field_validator, model_validator
from pydantic_core import to_json

from ticketing_common.schemas import CamelModel, Money, RequestBody, has_control_characters
from ticketing_tickets.domain import (
    COUNT_MESSAGE,
    DEFAULT_MAX_PER_BUYER,
    EVENT_ID_MESSAGE,
    MAX_PER_BUYER,
    MAX_PER_BUYER_MESSAGE,
    MAX_TICKETS_AT_ONCE,
    ON_SALE_AT_FORMAT_MESSAGE,
    STARTS_AT_FORMAT_MESSAGE,
    check_on_sale_at,
    check_starts_at,
    parse_moment,
    whole_number,
)

if TYPE_CHECKING:
    from ticketing_tickets.queries import Ticket

# The API's rules; the migrations' CHECK constraints hold the database to the same.
MAX_TITLE_LENGTH = 200  # and of an event's name and venue
MAX_PRICE = Decimal("1000000")
CENT = Decimal("0.01")
PRICE_MESSAGE = "Price must be greater than 0"
TITLE_MESSAGE = "Title is required"


def clean_text(value: Any, *, label: str) -> str:
    """A display text (a ticket's title, an event's name or venue) trimmed: 1 to 200 characters, no control
    characters; or ValueError with the message the client sees, which starts with ``label``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{label} is required")
    text = value.strip()
    if len(text) > MAX_TITLE_LENGTH:
        raise ValueError(f"{label} must be at most {MAX_TITLE_LENGTH} characters")
    if has_control_characters(text):
        raise ValueError(f"{label} must not contain control characters")
    return text


def clean_title(value: Any) -> str:
    """The title trimmed, or ValueError with the message the client sees."""
    return clean_text(value, label="Title")


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


def clean_version(value: Any) -> int | None:
    """The ``version`` of an edit (optional), or ValueError with the message the client sees."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("Version must be a whole number of 0 or more")
    return value


def clean_event_id(value: Any) -> uuid.UUID | None:
    """The ``eventId`` of a new ticket (optional), or ValueError with the message the client sees."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            pass
    raise ValueError(EVENT_ID_MESSAGE)


def utc_text(value: datetime) -> str:
    """A moment as the API shows it: ISO 8601 in UTC with a "Z"."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TicketFields(RequestBody):
    """What a ticket's owner chooses and may change: its title and price."""

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


class TicketIn(TicketFields):
    """Body of ``POST /api/tickets``: ``eventId``, when given, names an event of the caller's."""

    event_id: uuid.UUID | None = None

    @field_validator("event_id", mode="before")
    @classmethod
    def _event_id(cls, value: Any) -> uuid.UUID | None:
        return clean_event_id(value)


class TicketUpdate(TicketFields):
    """Body of ``PUT /api/tickets/:id``; ``version``, when given, must be the ticket's current version. A
    ticket's event is chosen at creation and is not part of an edit."""

    version: int | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> int | None:
        return clean_version(value)


class TicketOut(CamelModel):
    """A ticket as the API shows it; ``eventId`` is null for a ticket of no event."""

    id: uuid.UUID
    title: str
    price: Money
    user_id: uuid.UUID
    order_id: uuid.UUID | None
    version: int
    event_id: uuid.UUID | None


class TicketPage(CamelModel):
    """One page of the listing; ``next`` is the cursor of the following page, null on the last one."""

    tickets: list[TicketOut]
    next: str | None

    @staticmethod
    def body(tickets: Sequence[Ticket], next_cursor: str | None) -> bytes:
        """The page's JSON, as this model would write it (a test holds the two to the same bytes). Its rows come
        from this service's own database, valid already, so they go to JSON without a model each: the listing is
        the read every buyer of a sale repeats."""
        return to_json(
            {
                "tickets": [
                    {
                        # Ids as text already: to_json writes text much faster than a UUID (bench/README.md).
                        "id": str(t.id),
                        "title": t.title,
                        "price": float(t.price),  # as Money writes it
                        "userId": str(t.user_id),
                        "orderId": str(t.order_id) if t.order_id is not None else None,
                        "version": t.version,
                        "eventId": str(t.event_id) if t.event_id is not None else None,
                    }
                    for t in tickets
                ],
                "next": next_cursor,
            }
        )


# -- events ------------------------------------------------------------------------------------------------------


class EventIn(RequestBody):
    """Body of ``POST /api/events``. Every rule is checked here, against the clock when the body is parsed, so a
    client learns of every bad field at once; the use case checks the schedule again against its own moment.
    ``onSaleAt`` defaults to the moment of creation, ``maxPerBuyer`` to 4; ``null`` means the default."""

    name: str = Field(default=None, validate_default=True)
    venue: str = Field(default=None, validate_default=True)
    starts_at: datetime
    on_sale_at: datetime | None = None
    max_per_buyer: int = DEFAULT_MAX_PER_BUYER

    @model_validator(mode="before")
    @classmethod
    def _missing_starts_at_is_checked_too(cls, data: Any) -> Any:
        # A missing startsAt gets the message of a malformed one, reported under its camelCase name (a default
        # validated as such would be reported as "starts_at").
        if isinstance(data, dict) and "startsAt" not in data and "starts_at" not in data:
            return {**data, "startsAt": None}
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return clean_text(value, label="Name")

    @field_validator("venue", mode="before")
    @classmethod
    def _venue(cls, value: Any) -> str:
        return clean_text(value, label="Venue")

    @field_validator("starts_at", mode="before")
    @classmethod
    def _starts_at(cls, value: Any) -> datetime:
        return check_starts_at(parse_moment(value, STARTS_AT_FORMAT_MESSAGE), now=datetime.now(UTC))

    @field_validator("on_sale_at", mode="before")
    @classmethod
    def _on_sale_at(cls, value: Any, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        on_sale_at = parse_moment(value, ON_SALE_AT_FORMAT_MESSAGE)
        starts_at = info.data.get("starts_at")  # absent when it was refused: then there is nothing to compare
        return check_on_sale_at(on_sale_at, starts_at=starts_at) if starts_at is not None else on_sale_at

    @field_validator("max_per_buyer", mode="before")
    @classmethod
    def _max_per_buyer(cls, value: Any) -> int:
        if value is None:
            return DEFAULT_MAX_PER_BUYER
        return whole_number(value, low=1, high=MAX_PER_BUYER, message=MAX_PER_BUYER_MESSAGE)


class EventUpdate(EventIn):
    """Body of ``PUT /api/events/:id``: the whole event again, as for ``POST`` (an omitted optional field takes
    its default, as it would at creation); ``version``, when given, must be the event's current version."""

    version: int | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> int | None:
        return clean_version(value)


class EventTicketsIn(RequestBody):
    """Body of ``POST /api/events/:id/tickets``: ``count`` alike tickets; ``title`` defaults to the event's name."""

    count: int = Field(default=None, validate_default=True)
    price: Money = Field(default=None, validate_default=True)
    title: str | None = None

    @field_validator("count", mode="before")
    @classmethod
    def _count(cls, value: Any) -> int:
        return whole_number(value, low=1, high=MAX_TICKETS_AT_ONCE, message=COUNT_MESSAGE)

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Decimal:
        return clean_price(value)

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, value: Any) -> str | None:
        return None if value is None else clean_title(value)


class EventOut(CamelModel):
    """An event as the API shows it (times in UTC)."""

    id: uuid.UUID
    name: str
    venue: str
    starts_at: datetime
    on_sale_at: datetime
    max_per_buyer: int
    waiting_room: bool
    user_id: uuid.UUID
    version: int

    @field_serializer("starts_at", "on_sale_at", when_used="json")
    def _utc(self, value: datetime) -> str:
        return utc_text(value)


class TicketCountsOut(CamelModel):
    """An event's tickets held by no order (``available``) and held by one, paid or not (``reserved``)."""

    available: int
    reserved: int


class EventDetail(EventOut):
    """One event with the counts of its tickets."""

    tickets: TicketCountsOut


class EventPage(CamelModel):
    """One page of the upcoming events; ``next`` is the cursor of the following page, null on the last one."""

    events: list[EventOut]
    next: str | None


class TicketsCreated(CamelModel):
    """How many tickets ``POST /api/events/:id/tickets`` put on sale."""

    created: int
