"""A buyer's place, and how fast a room lets buyers out: pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ticketing_queue import domain
from ticketing_queue.domain import Place, PlaceState

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=10)


def test_before_the_draw_a_buyer_waits_without_position_ahead_or_estimate() -> None:
    assert domain.place(position=None, admitted_until=None, admitted_through=0, now=NOW, admit_per_second=50) == Place(
        PlaceState.WAITING, None, None, None, None
    )


@pytest.mark.parametrize(
    ("position", "admitted_through", "rate", "ahead", "estimate"),
    [
        (1, 0, 50, 0, 0),
        (2, 0, 50, 1, 1),
        (51, 0, 50, 50, 1),
        (52, 0, 50, 51, 2),
        (120, 100, 10, 19, 2),
        (7, 0, 0.5, 6, 12),
    ],
)
def test_a_waiting_buyer_sees_the_buyers_ahead_and_their_time_rounded_up(
    position: int, admitted_through: int, rate: float, ahead: int, estimate: int
) -> None:
    place = domain.place(
        position=position, admitted_until=None, admitted_through=admitted_through, now=NOW, admit_per_second=rate
    )

    assert place == Place(PlaceState.WAITING, position, ahead, estimate, None)


def test_an_admitted_buyer_is_admitted_until_admitted_until_then_expired() -> None:
    admitted = domain.place(position=3, admitted_until=LATER, admitted_through=3, now=NOW, admit_per_second=50)
    expired = domain.place(position=3, admitted_until=LATER, admitted_through=9, now=LATER, admit_per_second=50)

    assert admitted == Place(PlaceState.ADMITTED, 3, None, None, LATER)
    assert expired == Place(PlaceState.EXPIRED, 3, None, None, LATER)


def test_a_room_earns_admissions_at_the_rate_and_saves_up_one_second_at_most() -> None:
    assert domain.tokens_at(tokens=0, since=NOW, now=NOW, admit_per_second=50) == 0
    assert domain.tokens_at(tokens=0, since=NOW, now=NOW + timedelta(seconds=0.2), admit_per_second=50) == 10
    assert domain.tokens_at(tokens=3, since=NOW, now=NOW + timedelta(hours=1), admit_per_second=50) == 50
    assert domain.tokens_at(tokens=0, since=NOW, now=NOW + timedelta(hours=1), admit_per_second=0.5) == 1


def test_the_next_admission_is_the_next_positions_as_many_as_whole_admissions_allow() -> None:
    batch = domain.next_admission(
        admitted_through=10, last_position=100, tokens=0.5, since=NOW, now=NOW + timedelta(seconds=0.25), rate=10
    )

    assert (batch.first, batch.last, batch.count) == (11, 13, 3)
    assert batch.tokens == pytest.approx(0.0)


def test_the_next_admission_never_goes_past_the_last_position_and_keeps_what_it_did_not_spend() -> None:
    batch = domain.next_admission(
        admitted_through=98, last_position=100, tokens=0, since=NOW, now=NOW + timedelta(seconds=1), rate=10
    )

    assert (batch.first, batch.last, batch.count) == (99, 100, 2)
    assert batch.tokens == pytest.approx(8)


def test_no_admission_before_a_whole_one_is_earned() -> None:
    batch = domain.next_admission(
        admitted_through=0, last_position=5, tokens=0, since=NOW, now=NOW + timedelta(seconds=0.09), rate=10
    )

    assert batch.count == 0
    assert batch.tokens == pytest.approx(0.9)


def placement(**overrides: object) -> domain.JoinPlacement:
    values: dict[str, object] = {
        "waiting_room": True,
        "last_position": 10,
        "admitted_through": 10,
        "tokens": 0.0,
        "tokens_since": NOW - timedelta(seconds=1),
        "now": NOW,
        "rate": 5.0,
        "admission": timedelta(minutes=10),
    }
    return domain.place_joiner(**{**values, **overrides})  # type: ignore[arg-type]


def test_a_joiner_when_nobody_waits_and_an_admission_is_saved_up_is_admitted_at_once() -> None:
    joined = placement()

    assert (joined.position, joined.admitted_until, joined.admitted_through) == (11, LATER, 11)
    assert joined.tokens == pytest.approx(4)
    assert joined.tokens_since == NOW


def test_a_joiner_waits_behind_buyers_still_waiting() -> None:
    joined = placement(admitted_through=7, tokens=5.0)

    assert (joined.position, joined.admitted_until, joined.admitted_through, joined.tokens) == (11, None, 7, 5.0)


def test_a_joiner_waits_when_the_room_has_no_admission_left() -> None:
    joined = placement(tokens=0.0, tokens_since=NOW - timedelta(seconds=0.1))

    assert (joined.position, joined.admitted_until) == (11, None)


def test_without_a_waiting_room_every_joiner_is_admitted_at_once() -> None:
    joined = placement(waiting_room=False, admitted_through=4, tokens_since=None)

    assert (joined.position, joined.admitted_until, joined.admitted_through) == (11, LATER, 11)


@pytest.mark.parametrize(("seconds_left", "retry_after"), [(59.2, 60), (0.01, 1), (-0.5, 1), (3.0, 3)])
def test_retry_after_is_whole_seconds_left_at_least_one(seconds_left: float, retry_after: int) -> None:
    assert domain.retry_after_seconds(seconds_left) == retry_after
