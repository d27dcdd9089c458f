"""The rules of events (the shows tickets are sold for), without I/O: what their fields may be, when their sale
opens, whether it opens through the waiting room, and who may change them or add tickets to them.

Times are aware datetimes, kept in UTC. "Now" is always an argument: a use case reads the clock once and every
rule of that request sees the same moment.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ticketing_common.errors import (
    ConflictError,
    CustomError,
    ErrorItem,
    FieldError,
    ForbiddenError,
    RequestValidationError,
)
from ticketing_common.schemas import INVALID_TEXT_MESSAGE, is_storable_text

if TYPE_CHECKING:
    from ticketing_tickets.queries import EventEdit

DEFAULT_MAX_PER_BUYER = 4
MAX_PER_BUYER = 100
MAX_TICKETS_AT_ONCE = 5_000
MAX_SEARCH_LENGTH = 200

STARTS_AT_FORMAT_MESSAGE = "Start time must be a date and time with a UTC offset (ISO 8601)"
STARTS_AT_PAST_MESSAGE = "Start time must be in the future"
ON_SALE_AT_FORMAT_MESSAGE = "Sale start must be a date and time with a UTC offset (ISO 8601)"
ON_SALE_AT_LATE_MESSAGE = "Sale start must not be after the start time"
MAX_PER_BUYER_MESSAGE = f"Max per buyer must be a whole number from 1 to {MAX_PER_BUYER}"
COUNT_MESSAGE = f"Count must be a whole number from 1 to {MAX_TICKETS_AT_ONCE}"
EVENT_ID_MESSAGE = "Event id must be a valid id"
EVENT_NOT_FOUND_MESSAGE = "Event not found"
EVENT_MODIFIED_MESSAGE = "Event was modified, reload and try again"


def parse_moment(value: Any, message: str) -> datetime:
    """An ISO 8601 date and time with a UTC offset (``2026-06-01T20:00:00+02:00``, ``...Z``), in UTC; ValueError
    with ``message`` for anything else: not a string, not ISO 8601, no offset (a naive time names no moment), or
    a moment UTC cannot hold."""
    if not isinstance(value, str):
        raise ValueError(message)
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(message)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(message) from None


def whole_number(value: Any, *, low: int, high: int, message: str) -> int:
    """A JSON integer from ``low`` to ``high``; ValueError with ``message`` for anything else (booleans,
    fractions even when whole, strings)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(message)
    return value


def check_starts_at(starts_at: datetime, *, now: datetime) -> datetime:
    """An event must start after ``now``."""
    if starts_at <= now:
        raise ValueError(STARTS_AT_PAST_MESSAGE)
    return starts_at


def check_on_sale_at(on_sale_at: datetime, *, starts_at: datetime) -> datetime:
    """The sale may open at any moment up to the start (in the past too: then it is open already)."""
    if on_sale_at > starts_at:
        raise ValueError(ON_SALE_AT_LATE_MESSAGE)
    return on_sale_at


@dataclass(frozen=True)
class Schedule:
    """When an event starts and its sale opens, checked against one moment."""

    starts_at: datetime
    on_sale_at: datetime


def schedule(*, starts_at: datetime, on_sale_at: datetime | None, now: datetime) -> Schedule:
    """The schedule of an event created or replaced at ``now``: the sale opens at ``on_sale_at``, by default
    ``now``. 400 with a field for each rule broken (start not after ``now``, sale after the start).

    The request body was checked against the clock when it was parsed, so this refuses only what changed in
    between (a start a few microseconds away); it is the check the write relies on.
    """
    errors: list[ErrorItem] = []
    try:
        check_starts_at(starts_at, now=now)
    except ValueError as exc:
        errors.append({"message": str(exc), "field": "startsAt"})
    opens = now if on_sale_at is None else on_sale_at
    if not errors:
        try:
            check_on_sale_at(opens, starts_at=starts_at)
        except ValueError as exc:
            errors.append({"message": str(exc), "field": "onSaleAt"})
    if errors:
        raise RequestValidationError(errors)
    return Schedule(starts_at=starts_at, on_sale_at=opens)


def waiting_room(*, on_sale_at: datetime, created_at: datetime) -> bool:
    """Whether an event's sale opens through the queue's waiting room: iff its sale opens later than the
    moment it is created (an explicit future on-sale time). Decided once, at creation; never changed."""
    return on_sale_at > created_at


def why_event_not_edited(edit: EventEdit, *, user_id: uuid.UUID, expected_version: int | None) -> CustomError | None:
    """Why an edit of an event that wrote nothing is refused, from what its statement found, in the API's order:
    403 (not the owner), 409 (not the expected version). None when nothing refuses it: the event changed while
    the statement waited for it, so the next statement sees that change and answers from it."""
    if edit.user_id != user_id:
        return ForbiddenError()
    if expected_version is not None and edit.version != expected_version:
        return ConflictError(EVENT_MODIFIED_MESSAGE)
    return None


def may_add_tickets(*, owner: uuid.UUID, user_id: uuid.UUID) -> None:
    """Only an event's owner adds tickets to it (one by one or in bulk): 403 for anyone else."""
    if owner != user_id:
        raise ForbiddenError()


def search_text(value: str | None) -> str | None:
    """The ``q`` of the events' listing, trimmed; None when there is nothing to search for. 400 (field ``q``)
    for text PostgreSQL cannot hold (a NUL) or longer than any name or venue."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not is_storable_text(text):
        raise FieldError("q", INVALID_TEXT_MESSAGE)
    if len(text) > MAX_SEARCH_LENGTH:
        raise FieldError("q", f"Search must be at most {MAX_SEARCH_LENGTH} characters")
    return text


def contains_pattern(text: str) -> str:
    """An ``ILIKE ... ESCAPE '\\'`` pattern matching ``text`` anywhere, its own ``%``, ``_`` and ``\\`` matched
    literally (not as wildcards)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
