"""Pure functions that turn API data into what the pages show: prices, order states, countdowns, form errors."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from math import ceil
from typing import Any
from urllib.parse import urlsplit

from ticketing_common.errors import ErrorItem

CENT = Decimal("0.01")
CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def to_decimal(value: Any) -> Decimal | None:
    """An API amount (JSON number or string) as an exact Decimal; None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        # A JSON number arrives as float; its shortest repr is the number the API wrote (19.99, not 19.989999…).
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def format_amount(value: Any) -> str:
    """Two decimals, no symbol, no grouping: what a price input shows (``19.9`` -> ``19.90``)."""
    amount = to_decimal(value)
    return "" if amount is None else str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def format_price(value: Any, currency: str = "usd") -> str:
    """A price as people read it: symbol, thousands grouped, two decimals (``1234.5`` -> ``$1,234.50``)."""
    amount = to_decimal(value)
    if amount is None:
        return ""
    text = f"{amount.quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency.lower())
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def price_for_api(text: str) -> Any:
    """The price typed in the form, as the JSON the tickets API expects.

    A number goes as a JSON number (the API owns every rule: positive, at most two decimals, the maximum); the
    shortest float repr keeps what was typed for any realistic amount. Anything else goes as typed, so the API
    answers with its own message. A decimal comma ("19,99") is accepted when there is no dot.
    """
    cleaned = text.strip().replace(" ", "")
    if "," in cleaned and "." not in cleaned and cleaned.count(",") == 1:
        cleaned = cleaned.replace(",", ".")
    if not cleaned:
        return None
    amount = to_decimal(cleaned)
    if amount is None or not cleaned.lstrip("+-").replace(".", "", 1).isdigit():
        return text
    number = float(amount)
    return int(number) if amount == amount.to_integral_value() and abs(amount) < 2**53 else number


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp from the API as an aware datetime (UTC when no offset is given)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_clock(value: Any) -> str:
    """A timestamp as a time of day in UTC (``14:32:05 UTC``); empty when it is not a timestamp."""
    moment = parse_time(value)
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC") if moment else ""


def format_moment(value: Any) -> str:
    """A timestamp as a date and time in UTC (``Sun 1 Jun 2026, 20:00 UTC``; seconds only when there are some);
    empty when it is not a timestamp."""
    moment = parse_time(value)
    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    clock = "%H:%M:%S" if moment.second or moment.microsecond else "%H:%M"
    return f"{moment:%a} {moment.day} {moment:%b %Y}, {moment.strftime(clock)} UTC"


OFFSET = re.compile(r"[+-](?:0\d|1\d|2[0-3]):[0-5]\d")


def moment_for_api(text: str, offset: str | None = None) -> str | None:
    """A date and time typed in the form, as the ISO 8601 text with a UTC offset the events API expects.

    A ``datetime-local`` input sends the time without an offset (``2026-06-01T20:00``): it is read in the time
    zone whose ``offset`` (``+02:00``) the page's script sent beside it, else as UTC (what the form says without
    the script). A text that already carries an offset goes as typed; anything else too, for the API to refuse
    with its own message. Empty: None (the API's default, or its "required").
    """
    cleaned = text.strip()
    if not cleaned:
        return None
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        return text
    if moment.tzinfo is not None:
        return cleaned
    zone = offset.strip() if offset and OFFSET.fullmatch(offset.strip()) else "+00:00"
    return moment.isoformat() + zone


def whole_number_for_api(text: str) -> Any:
    """A whole number typed in the form (a count, a limit) as a JSON integer; anything else as typed, for the API
    to refuse with its own message; empty: None (the API's default, or its "required")."""
    cleaned = text.strip()
    if not cleaned:
        return None
    return int(cleaned) if cleaned.isascii() and cleaned.isdigit() and len(cleaned) <= 9 else text


def format_wait(seconds: Any) -> str:
    """The queue's estimated wait in words: ``less than a minute`` ... ``about 5 minutes``; empty when unknown."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return ""
    if seconds <= 0:
        return "any moment now"
    if seconds < 60:
        return "less than a minute"
    minutes = ceil(seconds / 60)
    if minutes < 120:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    return f"about {ceil(minutes / 60)} hours"


def format_remaining(seconds: float) -> str:
    """A countdown as ``m:ss`` (``h:mm:ss`` past an hour); never negative."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def retry_after_text(value: str | None, *, now: datetime | None = None) -> str | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) in words for the visitor; None without a usable one."""
    value = (value or "").strip()
    if value.isdigit():
        seconds = int(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = ceil((when - (now or datetime.now(UTC))).total_seconds())
    seconds = max(1, seconds)
    if seconds < 60:
        return f"Please try again in {seconds} second{'s' if seconds != 1 else ''}."
    minutes = ceil(seconds / 60)
    return f"Please try again in {minutes} minute{'s' if minutes != 1 else ''}."


@dataclass(frozen=True)
class OrderView:
    """What the order page shows for an order at a moment.

    ``state`` is one of ``pending`` (payable, counting down), ``expiring`` (time is up, the system has not
    cancelled it yet), ``confirming`` (paid, the order not yet marked complete), ``paid``, ``expired`` and
    ``cancelled``.
    """

    state: str
    label: str
    remaining_seconds: float

    @property
    def payable(self) -> bool:
        return self.state == "pending"

    @property
    def final(self) -> bool:
        return self.state in ("paid", "expired", "cancelled")


def order_view(order: dict[str, Any], *, now: datetime, payment_received: bool = False) -> OrderView:
    """The order's state and label. The API does not tell an expired order from a cancelled one: a cancelled
    order whose ``expiresAt`` has passed is shown as expired, any other cancelled one as cancelled."""
    status = order.get("status")
    expires_at = parse_time(order.get("expiresAt"))
    remaining = (expires_at - now).total_seconds() if expires_at else 0.0
    if status == "complete":
        return OrderView("paid", "Paid", 0)
    if status == "cancelled":
        if expires_at is not None and remaining <= 0:
            return OrderView("expired", "Order expired", 0)
        return OrderView("cancelled", "Order cancelled", 0)
    if payment_received:
        return OrderView("confirming", "Payment received", max(remaining, 0))
    if remaining <= 0:
        # Paying now would race the expiry; the page waits for the system to release the order instead.
        return OrderView("expiring", "Time is up", 0)
    return OrderView("pending", "Awaiting payment", remaining)


@dataclass(frozen=True)
class PlaceView:
    """A buyer's place in an event's waiting room, as the pages show it.

    ``state`` is the queue's (``waiting``, ``admitted``, ``expired``), except that an admission whose
    ``admittedUntil`` has passed is shown ``expired`` before the queue says so; ``drawn`` tells a waiting buyer
    with a position (after the draw, or a later joiner) from one waiting for the draw.
    """

    state: str
    label: str
    position: int | None
    ahead: int | None
    wait_seconds: int | None
    admitted_until: str | None

    @property
    def drawn(self) -> bool:
        return self.position is not None

    @property
    def admitted(self) -> bool:
        return self.state == "admitted"

    @property
    def wait(self) -> str:
        return format_wait(self.wait_seconds)

    @property
    def key(self) -> str:
        """What changes the waiting room page's panel (the numbers alone change in place)."""
        return f"{self.state}:{'drawn' if self.drawn else 'draw'}"


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def place_view(place: dict[str, Any], *, now: datetime) -> PlaceView:
    """The buyer's place from the queue API's answer."""
    state = place.get("state")
    until = place.get("admittedUntil") if isinstance(place.get("admittedUntil"), str) else None
    position = _whole(place.get("position"))
    if state == "admitted":
        ends = parse_time(until)
        if ends is not None and ends <= now:
            state = "expired"
    if state == "admitted":
        label = "Admitted"
    elif state == "expired":
        label = "Admission expired"
    else:
        state = "waiting"
        label = "Waiting in line" if position is not None else "Waiting for the draw"
    return PlaceView(
        state=state,
        label=label,
        position=position,
        ahead=_whole(place.get("ahead")) if state == "waiting" else None,
        wait_seconds=_whole(place.get("estimatedWaitSeconds")) if state == "waiting" else None,
        admitted_until=until,
    )


def entrant_hash(user_id: str) -> str:
    """How the queue's published draw names a buyer: sha256 of their id in canonical form, lowercase hex (empty for
    what is not an id)."""
    try:
        canonical = str(uuid.UUID(user_id))
    except ValueError:
        return ""
    return hashlib.sha256(canonical.encode()).hexdigest()


def on_sale(event: dict[str, Any], *, now: datetime) -> bool:
    """Whether the event's sale has opened (``onSaleAt`` passed)."""
    opens = parse_time(event.get("onSaleAt"))
    return opens is not None and opens <= now


def event_offer(
    event: dict[str, Any], *, place: PlaceView | None, signed_in: bool, is_owner: bool, now: datetime
) -> str:
    """What the event page offers this visitor, one of: ``owner`` (list tickets; no buying one's own),
    ``sign-in``, ``buy`` (the sale is open, no waiting room), ``not-on-sale`` (no waiting room, the sale opens
    later), and for an event with a waiting room ``join`` (not joined yet), ``waiting``, ``admitted`` (may buy
    until ``admittedUntil``) or ``expired`` (the admission ended; the queue does not take them again)."""
    if is_owner:
        return "owner"
    if not signed_in:
        return "sign-in"
    if event.get("waitingRoom"):
        return "join" if place is None else place.state
    return "buy" if on_sale(event, now=now) else "not-on-sale"


def safe_next(value: Any, default: str = "/") -> str:
    """A local path to go back to after signing in; anything that could leave the site becomes ``default``."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(ch) < 32 for ch in value):
        return default
    return value


def split_errors(errors: list[ErrorItem], fields: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Errors of the form's own fields (first message per field) and the rest, shown at the top of the form."""
    by_field: dict[str, str] = {}
    general: list[str] = []
    for error in errors:
        name = error.get("field")
        if name in fields:
            by_field.setdefault(name, error["message"])
        else:
            general.append(error["message"])
    return by_field, general
