"""The listing's cursor, page size and body, and request bodies parsed with exact numbers, without any server."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ticketing_common.errors import FieldError
from ticketing_tickets.pagination import Cursor, parse_limit
from ticketing_tickets.queries import Ticket
from ticketing_tickets.routing import loads_exact
from ticketing_tickets.schemas import TicketOut, TicketPage

pytestmark = pytest.mark.unit


def test_a_cursor_reads_back_as_the_position_it_names() -> None:
    cursor = Cursor(datetime(2026, 3, 1, 12, 30, 0, 123456, tzinfo=UTC), uuid.uuid4())
    encoded = cursor.encode()
    assert "=" not in encoded  # safe in a query string as it is
    assert Cursor.decode(encoded) == cursor


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64 !",
        base64.urlsafe_b64encode(b"2026-03-01T12:30:00+00:00").decode(),  # no id
        base64.urlsafe_b64encode(f"2026-03-01T12:30:00|{uuid.uuid4()}".encode()).decode(),  # naive time
        base64.urlsafe_b64encode(b"2026-03-01T12:30:00+00:00|not-a-uuid").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_anything_but_a_cursor_handed_out_is_refused_on_the_cursor_field(value: str) -> None:
    with pytest.raises(FieldError) as refused:
        Cursor.decode(value)
    assert (refused.value.field, refused.value.message) == ("cursor", "Invalid cursor")


@pytest.mark.parametrize(("value", "limit"), [(None, 50), ("1", 1), ("100", 100), ("007", 7)])
def test_the_page_size_is_a_whole_number_from_1_to_100_defaulting_to_50(value: str | None, limit: int) -> None:
    assert parse_limit(value) == limit


@pytest.mark.parametrize("value", ["0", "101", "-1", "1.5", "ten", "", "\uff11\uff10", "0100"])
def test_any_other_page_size_is_refused_on_the_limit_field(value: str) -> None:
    with pytest.raises(FieldError) as refused:
        parse_limit(value)
    assert (refused.value.field, refused.value.message) == ("limit", "Limit must be a whole number from 1 to 100")


def test_fractions_in_a_body_stay_exactly_what_the_client_sent() -> None:
    assert loads_exact(b'{"price": 19.999999999999999999}') == {"price": Decimal("19.999999999999999999")}


def test_non_finite_numbers_reach_the_validators_instead_of_failing_the_parse() -> None:
    body = loads_exact('{"a": NaN, "b": Infinity}')
    assert body["a"].is_nan()
    assert body["b"] == Decimal("Infinity")


def test_an_integer_too_long_to_parse_is_a_json_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_exact("1" * 5000)


@pytest.mark.parametrize("next_cursor", [None, "MjAyNi0xMS0zMFQwNTowMDowMCswMDowMHwx"])
def test_the_listing_body_is_the_page_model_written_as_json(next_cursor: str | None) -> None:
    created = datetime(2026, 11, 30, tzinfo=UTC)
    rows = [
        Ticket(uuid.uuid4(), "Concert", Decimal("20.00"), uuid.uuid4(), None, 0, created, None),
        Ticket(
            uuid.uuid4(),
            'Quotes " and \\ and ünïcödé',
            Decimal("19.99"),
            uuid.uuid4(),
            uuid.uuid4(),
            7,
            created,
            uuid.uuid4(),
        ),
        Ticket(uuid.uuid4(), "Cheap", Decimal("0.05"), uuid.uuid4(), None, 1, created, None),
        Ticket(uuid.uuid4(), "Dear", Decimal("99999999.99"), uuid.uuid4(), None, 2, created, None),
    ]
    by_the_model = TicketPage(tickets=[TicketOut.model_validate(row) for row in rows], next=next_cursor)

    assert TicketPage.body(rows, next_cursor) == by_the_model.model_dump_json(by_alias=True).encode()
