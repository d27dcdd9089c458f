"""What the pages show for API data: prices, order states, countdowns, safe redirects, form errors."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from ticketing_client.presenters import (
    entrant_hash,
    event_offer,
    format_amount,
    format_clock,
    format_moment,
    format_price,
    format_remaining,
    format_wait,
    moment_for_api,
    order_view,
    place_view,
    price_for_api,
    retry_after_text,
    safe_next,
    split_errors,
    whole_number_for_api,
)

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (20, "$20.00"),
        (19.9, "$19.90"),
        (19.99, "$19.99"),
        (0.29, "$0.29"),
        (1234567.5, "$1,234,567.50"),
        ("7.1", "$7.10"),
    ],
)
def test_prices_are_shown_with_two_decimals(value: object, shown: str) -> None:
    assert format_price(value) == shown


def test_prices_use_the_currency_symbol_or_code() -> None:
    assert format_price(5, "eur") == "€5.00"
    assert format_price(5, "chf") == "5.00 CHF"


def test_price_inputs_are_prefilled_with_two_decimals_and_no_symbol() -> None:
    assert format_amount(19.9) == "19.90"
    assert format_amount(1000000) == "1000000.00"
    assert format_amount(None) == ""


@pytest.mark.parametrize(
    ("typed", "sent"),
    [("19.99", 19.99), ("20", 20), (" 0.29 ", 0.29), ("19,99", 19.99), ("-5", -5), ("19.999", 19.999)],
)
def test_typed_prices_go_to_the_api_as_json_numbers(typed: str, sent: object) -> None:
    value = price_for_api(typed)
    assert value == sent
    assert type(value) is type(sent)


@pytest.mark.parametrize("typed", ["abc", "1e5", "NaN", "12.3.4"])
def test_anything_else_goes_as_typed_for_the_api_to_refuse(typed: str) -> None:
    assert price_for_api(typed) == typed


def test_an_empty_price_is_sent_as_missing() -> None:
    assert price_for_api("  ") is None


def test_an_order_within_its_window_is_payable_with_the_time_left() -> None:
    view = order_view({"status": "created", "expiresAt": _iso(NOW + timedelta(seconds=95))}, now=NOW)
    assert (view.state, view.label, view.payable, view.final) == ("pending", "Awaiting payment", True, False)
    assert view.remaining_seconds == 95
    assert format_remaining(view.remaining_seconds) == "1:35"


def test_a_complete_order_is_paid() -> None:
    view = order_view({"status": "complete", "expiresAt": _iso(NOW - timedelta(minutes=5))}, now=NOW)
    assert (view.state, view.label, view.final) == ("paid", "Paid", True)


def test_a_cancelled_order_past_its_deadline_is_shown_as_expired() -> None:
    view = order_view({"status": "cancelled", "expiresAt": _iso(NOW - timedelta(seconds=1))}, now=NOW)
    assert (view.state, view.label) == ("expired", "Order expired")


def test_a_cancelled_order_before_its_deadline_is_shown_as_cancelled() -> None:
    view = order_view({"status": "cancelled", "expiresAt": _iso(NOW + timedelta(minutes=5))}, now=NOW)
    assert (view.state, view.label) == ("cancelled", "Order cancelled")


def test_an_order_past_its_deadline_but_not_yet_cancelled_is_no_longer_payable() -> None:
    view = order_view({"status": "created", "expiresAt": _iso(NOW - timedelta(seconds=1))}, now=NOW)
    assert (view.state, view.payable, view.final) == ("expiring", False, False)


def test_a_paid_order_not_yet_complete_waits_for_confirmation_without_the_payment_form() -> None:
    view = order_view(
        {"status": "created", "expiresAt": _iso(NOW + timedelta(minutes=5))}, now=NOW, payment_received=True
    )
    assert (view.state, view.label, view.payable) == ("confirming", "Payment received", False)
    assert order_view({"status": "complete"}, now=NOW, payment_received=True).label == "Paid"


def test_countdowns_read_as_minutes_and_seconds() -> None:
    assert format_remaining(0) == "0:00"
    assert format_remaining(-3) == "0:00"
    assert format_remaining(59.9) == "0:59"
    assert format_remaining(900) == "15:00"
    assert format_remaining(3725) == "1:02:05"


def test_deadlines_are_shown_as_utc_times_of_day() -> None:
    assert format_clock("2030-01-01T12:34:56Z") == "12:34:56 UTC"
    assert format_clock("2030-01-01T14:34:56+02:00") == "12:34:56 UTC"
    assert format_clock("not a time") == ""


@pytest.mark.parametrize("target", ["/", "/tickets/new", "/orders?x=1"])
def test_sign_in_returns_to_local_pages(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target", ["//evil.example", "https://evil.example/", "/\\evil.example", "evil", "", None, "/\x00x", "/\tx"]
)
def test_sign_in_never_sends_anyone_off_site(target: object) -> None:
    assert safe_next(target) == "/"


def test_field_errors_go_next_to_their_fields_and_the_rest_on_top() -> None:
    errors = [
        {"message": "Email must be valid", "field": "email"},
        {"message": "second email message", "field": "email"},
        {"message": "Invalid credentials"},
        {"message": "Version is stale", "field": "version"},
    ]
    by_field, general = split_errors(errors, ("email", "password"))  # type: ignore[arg-type]
    assert by_field == {"email": "Email must be valid"}
    assert general == ["Invalid credentials", "Version is stale"]


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("1", "Please try again in 1 second."),
        ("30", "Please try again in 30 seconds."),
        ("60", "Please try again in 1 minute."),
        ("61", "Please try again in 2 minutes."),
        ("0", "Please try again in 1 second."),
        ("Sun, 29 Nov 2026 12:05:00 GMT", "Please try again in 5 minutes."),
        ("Sun, 29 Nov 2026 11:00:00 GMT", "Please try again in 1 second."),
    ],
)
def test_retry_after_reads_as_words(header: str, words: str) -> None:
    assert retry_after_text(header, now=datetime(2026, 11, 29, 12, 0, tzinfo=UTC)) == words


@pytest.mark.parametrize("header", [None, "", "soon", "-5", "Sun, 29 Nov 2026 12:05:00"])
def test_retry_after_without_a_usable_value_says_nothing(header: str | None) -> None:
    assert retry_after_text(header) is None


# -- events and the waiting room ----------------------------------------------------------------------------------


def test_event_times_are_shown_as_utc_dates_with_seconds_only_when_there_are_some() -> None:
    assert format_moment("2030-06-01T20:00:00Z") == "Sat 1 Jun 2030, 20:00 UTC"
    assert format_moment("2030-06-01T22:00:05+02:00") == "Sat 1 Jun 2030, 20:00:05 UTC"
    assert format_moment("soon") == ""
    assert format_moment(None) == ""


@pytest.mark.parametrize(
    ("typed", "offset", "sent"),
    [
        ("2030-06-01T20:00", "+02:00", "2030-06-01T20:00:00+02:00"),  # datetime-local, the page's script's offset
        ("2030-06-01T20:00:05", "-05:30", "2030-06-01T20:00:05-05:30"),
        ("2030-06-01T20:00", None, "2030-06-01T20:00:00+00:00"),  # no script: UTC, as the form then says
        ("2030-06-01T20:00", "", "2030-06-01T20:00:00+00:00"),
        ("2030-06-01T20:00", "+2", "2030-06-01T20:00:00+00:00"),  # a forged offset is not believed
        ("2030-06-01T20:00", "+02:00Z", "2030-06-01T20:00:00+00:00"),
        (" 2030-06-01T20:00:00+01:00 ", "+02:00", "2030-06-01T20:00:00+01:00"),  # an offset typed wins
        ("next friday", "+02:00", "next friday"),  # for the API to refuse with its own message
        ("  ", "+02:00", None),
    ],
)
def test_typed_times_go_to_the_api_with_a_utc_offset(typed: str, offset: str | None, sent: str | None) -> None:
    assert moment_for_api(typed, offset) == sent


@pytest.mark.parametrize(("typed", "sent"), [("4", 4), (" 12 ", 12), ("", None), ("two", "two"), ("1.5", "1.5")])
def test_typed_counts_go_as_whole_numbers_or_as_typed(typed: str, sent: object) -> None:
    assert whole_number_for_api(typed) == sent


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, ""),
        (0, "any moment now"),
        (12, "less than a minute"),
        (60, "about 1 minute"),
        (61, "about 2 minutes"),
        (7200, "about 2 hours"),
    ],
)
def test_estimated_waits_read_as_words(seconds: int | None, words: str) -> None:
    assert format_wait(seconds) == words


def test_a_place_before_the_draw_waits_for_it_without_numbers() -> None:
    view = place_view(
        {"state": "waiting", "position": None, "ahead": None, "estimatedWaitSeconds": None, "admittedUntil": None},
        now=NOW,
    )
    assert (view.state, view.label, view.drawn, view.admitted, view.key) == (
        "waiting",
        "Waiting for the draw",
        False,
        False,
        "waiting:draw",
    )


def test_a_place_after_the_draw_has_its_position_ahead_and_wait() -> None:
    view = place_view(
        {"state": "waiting", "position": 120, "ahead": 100, "estimatedWaitSeconds": 2, "admittedUntil": None}, now=NOW
    )
    assert (view.label, view.position, view.ahead, view.wait_seconds, view.wait) == (
        "Waiting in line",
        120,
        100,
        2,
        "less than a minute",
    )
    assert view.key == "waiting:drawn"


def test_an_admission_is_shown_until_it_ends_then_as_expired() -> None:
    place = {"state": "admitted", "position": 3, "ahead": None, "estimatedWaitSeconds": None}
    admitted = place_view({**place, "admittedUntil": _iso(NOW + timedelta(minutes=5))}, now=NOW)
    assert (admitted.state, admitted.label, admitted.admitted) == ("admitted", "Admitted", True)
    ended = place_view({**place, "admittedUntil": _iso(NOW - timedelta(seconds=1))}, now=NOW)
    assert (ended.state, ended.label, ended.admitted) == ("expired", "Admission expired", False)
    expired = place_view({**place, "state": "expired", "admittedUntil": _iso(NOW)}, now=NOW)
    assert (expired.state, expired.key) == ("expired", "expired:drawn")


def _event(on_sale_in: float, *, waiting_room: bool) -> dict[str, object]:
    return {"onSaleAt": _iso(NOW + timedelta(seconds=on_sale_in)), "waitingRoom": waiting_room}


def test_what_the_event_page_offers_each_visitor() -> None:
    open_sale, later = _event(-60, waiting_room=False), _event(60, waiting_room=False)
    room = _event(60, waiting_room=True)
    waiting = place_view({"state": "waiting"}, now=NOW)
    admitted = place_view({"state": "admitted", "admittedUntil": _iso(NOW + timedelta(minutes=1))}, now=NOW)

    def offer(event: dict[str, object], **kwargs: object) -> str:
        arguments: dict[str, object] = {"place": None, "signed_in": True, "is_owner": False, **kwargs}
        return event_offer(event, now=NOW, **arguments)  # type: ignore[arg-type]

    assert offer(open_sale, is_owner=True) == "owner"
    assert offer(open_sale, signed_in=False) == "sign-in"
    assert offer(open_sale) == "buy"
    assert offer(later) == "not-on-sale"
    assert offer(room) == "join"
    assert offer(room, place=waiting) == "waiting"
    assert offer(room, place=admitted) == "admitted"


def test_a_buyer_finds_their_entry_in_a_draw_as_the_sha256_of_their_id() -> None:
    user_id = "0F6B7C4E-1D2A-4B3C-8D9E-0A1B2C3D4E5F"
    assert entrant_hash(user_id) == hashlib.sha256(user_id.lower().encode()).hexdigest()
    assert entrant_hash("nobody") == ""
