"""The rules of events on their own, no server: what their fields may be, when a sale opens and whether it opens
through the waiting room, who may change an event or add tickets to it, and how a search is matched."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from ticketing_common.errors import ConflictError, FieldError, ForbiddenError, RequestValidationError
from ticketing_common.events import TicketCreated
from ticketing_tickets import domain
from ticketing_tickets.cache import from_event
from ticketing_tickets.queries import EventEdit
from ticketing_tickets.schemas import EventIn, EventTicketsIn, TicketIn, TicketUpdate

pytestmark = pytest.mark.unit

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
OWNER, SOMEONE_ELSE = uuid.UUID(int=1), uuid.UUID(int=2)


# -- the waiting room ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_sale_at", "waiting_room"),
    [
        pytest.param(NOW + timedelta(microseconds=1), True, id="later-than-creation"),
        pytest.param(NOW + timedelta(days=30), True, id="a-month-later"),
        pytest.param(NOW, False, id="at-creation"),
        pytest.param(NOW - timedelta(days=1), False, id="already-open"),
    ],
)
def test_a_sale_goes_through_the_waiting_room_iff_it_opens_later_than_the_creation(
    on_sale_at: datetime, waiting_room: bool
) -> None:
    assert domain.waiting_room(on_sale_at=on_sale_at, created_at=NOW) is waiting_room


def test_without_an_on_sale_time_the_sale_opens_at_the_creation_so_no_waiting_room() -> None:
    planned = domain.schedule(starts_at=NOW + timedelta(days=7), on_sale_at=None, now=NOW)
    assert planned.on_sale_at == NOW
    assert domain.waiting_room(on_sale_at=planned.on_sale_at, created_at=NOW) is False


# -- the schedule --------------------------------------------------------------------------------------------------


def test_a_sale_may_open_in_the_past_or_at_the_very_start() -> None:
    start = NOW + timedelta(days=1)
    assert domain.schedule(starts_at=start, on_sale_at=NOW - timedelta(days=3), now=NOW).on_sale_at < NOW
    assert domain.schedule(starts_at=start, on_sale_at=start, now=NOW).on_sale_at == start


@pytest.mark.parametrize("starts_at", [NOW, NOW - timedelta(microseconds=1), NOW - timedelta(days=365)])
def test_an_event_must_start_after_now(starts_at: datetime) -> None:
    with pytest.raises(RequestValidationError) as refused:
        domain.schedule(starts_at=starts_at, on_sale_at=None, now=NOW)
    assert refused.value.serialize() == [{"message": "Start time must be in the future", "field": "startsAt"}]


def test_a_start_reached_while_the_request_ran_is_refused_rather_than_opening_the_sale_after_it() -> None:
    # The body was checked a moment earlier; by the use case's "now" the start has come.
    with pytest.raises(RequestValidationError) as refused:
        domain.schedule(starts_at=NOW, on_sale_at=None, now=NOW + timedelta(microseconds=5))
    assert refused.value.serialize()[0]["field"] == "startsAt"


def test_a_sale_must_not_open_after_the_start() -> None:
    start = NOW + timedelta(days=1)
    with pytest.raises(RequestValidationError) as refused:
        domain.schedule(starts_at=start, on_sale_at=start + timedelta(microseconds=1), now=NOW)
    assert refused.value.serialize() == [
        {"message": "Sale start must not be after the start time", "field": "onSaleAt"}
    ]


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2030-06-01T20:00:00Z", datetime(2030, 6, 1, 20, tzinfo=UTC)),
        ("2030-06-01T22:00:00+02:00", datetime(2030, 6, 1, 20, tzinfo=UTC)),
        ("2030-06-01T15:30:00.5-04:30", datetime(2030, 6, 1, 20, 0, 0, 500000, tzinfo=UTC)),
        (" 2030-06-01T20:00:00+00:00 ", datetime(2030, 6, 1, 20, tzinfo=UTC)),
    ],
)
def test_a_moment_is_iso_8601_with_an_offset_and_kept_in_utc(text: str, moment: datetime) -> None:
    parsed = domain.parse_moment(text, "bad")
    assert parsed == moment
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        "2030-06-01T20:00:00",  # naive: names no moment
        "2030-06-01",
        "20:00",
        "tomorrow",
        "",
        None,
        1900000000,
        datetime(2030, 6, 1, 20),  # a naive datetime from Python callers too
        "9999-12-31T23:59:59-23:59",  # later than UTC can hold
        "0001-01-01T00:00:00+01:00",  # earlier than UTC can hold
    ],
)
def test_anything_else_is_refused_with_the_fields_message(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^bad$"):
        domain.parse_moment(value, "bad")


def test_an_aware_moment_in_another_zone_is_the_same_moment() -> None:
    tz = timezone(timedelta(hours=-7))
    assert domain.parse_moment("2030-06-01T13:00:00-07:00", "bad") == datetime(2030, 6, 1, 13, tzinfo=tz)


# -- bodies --------------------------------------------------------------------------------------------------------


def _event_body(**fields: Any) -> dict[str, Any]:
    return {"name": "Jazz", "venue": "Club", "startsAt": "2099-01-01T20:00:00Z", **fields}


def test_an_event_body_is_trimmed_and_defaults_to_four_per_buyer_and_no_on_sale_time() -> None:
    body = EventIn.model_validate(_event_body(name="  Jazz ", venue=" Club"))
    assert (body.name, body.venue, body.on_sale_at, body.max_per_buyer) == ("Jazz", "Club", None, 4)
    assert body.starts_at == datetime(2099, 1, 1, 20, tzinfo=UTC)


def test_an_event_body_reports_every_bad_field_at_once() -> None:
    with pytest.raises(ValidationError) as refused:
        EventIn.model_validate({"name": "", "startsAt": "2001-01-01T00:00:00Z", "maxPerBuyer": 0})
    fields = {(str(error["loc"][0]), str(error["ctx"]["error"])) for error in refused.value.errors()}
    assert fields == {
        ("name", "Name is required"),
        ("venue", "Venue is required"),
        ("startsAt", "Start time must be in the future"),
        ("maxPerBuyer", domain.MAX_PER_BUYER_MESSAGE),
    }


def test_a_missing_start_is_reported_under_its_json_name() -> None:
    with pytest.raises(ValidationError) as refused:
        EventIn.model_validate({"name": "Jazz", "venue": "Club"})
    [error] = refused.value.errors()
    assert (error["loc"], str(error["ctx"]["error"])) == (("startsAt",), domain.STARTS_AT_FORMAT_MESSAGE)


def test_the_on_sale_time_is_compared_with_the_start_only_when_the_start_is_valid() -> None:
    with pytest.raises(ValidationError) as refused:
        EventIn.model_validate(_event_body(startsAt="soon", onSaleAt="2099-01-02T00:00:00Z"))
    assert [error["loc"] for error in refused.value.errors()] == [("startsAt",)]
    with pytest.raises(ValidationError) as refused:
        EventIn.model_validate(_event_body(onSaleAt="2099-01-02T00:00:00Z"))
    assert [error["loc"] for error in refused.value.errors()] == [("onSaleAt",)]


@pytest.mark.parametrize("value", [0, 101, True, Decimal("4.0"), 4.0, "4"])
def test_max_per_buyer_is_a_whole_number_from_1_to_100(value: Any) -> None:
    with pytest.raises(ValidationError):
        EventIn.model_validate(_event_body(maxPerBuyer=value))


@pytest.mark.parametrize("count", [1, 5000])
def test_a_bulk_creation_takes_1_to_5000_tickets_named_after_the_event_unless_titled(count: int) -> None:
    body = EventTicketsIn.model_validate({"count": count, "price": Decimal("9.99")})
    assert (body.count, body.price, body.title) == (count, Decimal("9.99"), None)


@pytest.mark.parametrize("count", [0, 5001, None, True, Decimal(2), "2"])
def test_a_bulk_creation_of_any_other_count_is_refused(count: Any) -> None:
    with pytest.raises(ValidationError, match=domain.COUNT_MESSAGE):
        EventTicketsIn.model_validate({"count": count, "price": 1})


@pytest.mark.parametrize("event_id", ["nope", 7, "", ["x"]])
def test_a_tickets_event_id_must_be_an_id(event_id: Any) -> None:
    with pytest.raises(ValidationError, match=domain.EVENT_ID_MESSAGE):
        TicketIn.model_validate({"title": "t", "price": 1, "eventId": event_id})


def test_a_tickets_event_is_chosen_at_creation_and_is_not_part_of_an_edit() -> None:
    event_id = uuid.uuid4()
    assert TicketIn.model_validate({"title": "t", "price": 1, "eventId": f" {event_id} "}).event_id == event_id
    assert "event_id" not in TicketUpdate.model_fields


# -- who may do what -----------------------------------------------------------------------------------------------


def test_only_the_owner_adds_tickets_to_an_event() -> None:
    domain.may_add_tickets(owner=OWNER, user_id=OWNER)
    with pytest.raises(ForbiddenError):
        domain.may_add_tickets(owner=OWNER, user_id=SOMEONE_ELSE)


def test_an_edit_is_refused_first_for_not_being_the_owner_then_for_a_stale_version() -> None:
    not_mine = EventEdit(user_id=OWNER, version=3, written=None)
    assert isinstance(domain.why_event_not_edited(not_mine, user_id=SOMEONE_ELSE, expected_version=0), ForbiddenError)
    stale = domain.why_event_not_edited(not_mine, user_id=OWNER, expected_version=2)
    assert isinstance(stale, ConflictError)
    assert stale.message == "Event was modified, reload and try again"


def test_an_edit_that_lost_a_race_is_tried_again_not_refused() -> None:
    # The statement saw version 3 (as expected) but the row changed while it waited: the next try answers.
    raced = EventEdit(user_id=OWNER, version=3, written=None)
    assert domain.why_event_not_edited(raced, user_id=OWNER, expected_version=3) is None
    assert domain.why_event_not_edited(raced, user_id=OWNER, expected_version=None) is None


# -- search --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("q", "text"), [(None, None), ("", None), ("   ", None), (" Jazz  ", "Jazz")])
def test_a_search_is_trimmed_and_a_blank_one_is_none(q: str | None, text: str | None) -> None:
    assert domain.search_text(q) == text


@pytest.mark.parametrize(
    ("q", "message"), [("a\x00b", "Must be valid text"), ("x" * 201, "Search must be at most 200 characters")]
)
def test_a_search_postgresql_cannot_hold_or_longer_than_any_name_is_refused_on_q(q: str, message: str) -> None:
    with pytest.raises(FieldError) as refused:
        domain.search_text(q)
    assert refused.value.field == "q"
    assert refused.value.message.startswith(message)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("jazz", "%jazz%"),
        ("100%", "%100\\%%"),
        ("a_b", "%a\\_b%"),
        ("back\\slash", "%back\\\\slash%"),
        ("\\%_", "%\\\\\\%\\_%"),
    ],
)
def test_a_search_matches_its_text_anywhere_with_its_wildcards_taken_literally(text: str, pattern: str) -> None:
    assert domain.contains_pattern(text) == pattern


# -- the read model ------------------------------------------------------------------------------------------------


def test_the_read_model_takes_the_event_id_from_ticket_events() -> None:
    event_id = uuid.uuid4()
    created = TicketCreated(id=uuid.uuid4(), title="t", price=Decimal(1), user_id=OWNER, version=0, event_id=event_id)
    ticket = from_event(created)
    assert ticket is not None
    assert (ticket.event_id, ticket.order_id) == (event_id, None)
