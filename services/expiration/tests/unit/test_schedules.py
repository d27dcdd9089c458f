"""The schedule an order gets, and which copy of an order decides: pure rules, no server needed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ticketing_common.events import OrderExpired
from ticketing_expiration.schedules import (
    as_utc,
    expired_event,
    expired_event_id,
    schedule_headers,
    schedule_subject,
)
from ticketing_expiration.service import first_copies

pytestmark = pytest.mark.unit

ORDER = uuid.UUID("0b8e7a4c-1f2d-4e5a-9c3b-7d6e5f4a3b2c")
EXPIRES_AT = datetime(2026, 12, 1, 14, 30, 5, 123456, tzinfo=UTC)


def test_each_order_has_a_schedule_subject_of_its_own() -> None:
    assert schedule_subject(ORDER) == f"expiration.orders.{ORDER}"
    assert schedule_subject(uuid.uuid4()) != schedule_subject(ORDER)


def test_the_expired_event_of_an_order_has_the_same_id_every_time_and_another_for_another_order() -> None:
    assert expired_event_id(ORDER) == expired_event_id(uuid.UUID(str(ORDER)))
    assert expired_event_id(uuid.uuid4()) != expired_event_id(ORDER)
    assert expired_event(ORDER) == OrderExpired(order_id=ORDER)


def test_the_schedule_fires_order_expired_at_the_expiry_to_the_microsecond_in_utc() -> None:
    headers = schedule_headers(ORDER, EXPIRES_AT, source="expiration")
    assert headers["Nats-Schedule"] == "@at 2026-12-01T14:30:05.123456Z"
    assert headers["Nats-Schedule-Target"] == "order.expired"


def test_the_fired_event_carries_its_stable_id_and_the_expiry_as_its_time() -> None:
    headers = schedule_headers(ORDER, EXPIRES_AT, source="expiration")
    assert headers["ce-id"] == str(expired_event_id(ORDER))
    assert headers["ce-type"] == "order.expired"
    assert headers["ce-source"] == "expiration"
    assert datetime.fromisoformat(headers["ce-time"]) == EXPIRES_AT


def test_the_schedule_leaves_its_message_id_to_the_outbox() -> None:
    assert "Nats-Msg-Id" not in schedule_headers(ORDER, EXPIRES_AT, source="expiration")


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(EXPIRES_AT.astimezone(timezone(timedelta(hours=2))), id="another-offset"),
        pytest.param(EXPIRES_AT.replace(tzinfo=None), id="naive-taken-as-utc"),
    ],
)
def test_an_expiry_in_another_zone_or_without_one_is_scheduled_at_the_same_utc_instant(moment: datetime) -> None:
    assert as_utc(moment) == EXPIRES_AT
    assert as_utc(moment).tzinfo == UTC
    assert schedule_headers(ORDER, moment, source="expiration") == schedule_headers(
        ORDER, EXPIRES_AT, source="expiration"
    )


def test_the_first_copy_of_an_order_decides_its_expiry_and_orders_keep_the_order_first_seen() -> None:
    other = uuid.uuid4()
    later = EXPIRES_AT + timedelta(minutes=5)
    copies = [(ORDER, EXPIRES_AT), (other, later), (ORDER, later), (other, EXPIRES_AT)]
    assert list(first_copies(copies).items()) == [(ORDER, EXPIRES_AT), (other, later)]


def test_the_first_copies_are_in_utc() -> None:
    assert first_copies([(ORDER, EXPIRES_AT.replace(tzinfo=None))]) == {ORDER: EXPIRES_AT}
