"""What the pages show for API data: prices, order states, countdowns, safe redirects, form errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ticketing_client.presenters import (
    format_amount,
    format_clock,
    format_price,
    format_remaining,
    order_view,
    price_for_api,
    retry_after_text,
    safe_next,
    split_errors,
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
