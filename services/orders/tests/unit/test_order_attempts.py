"""A buyer's order attempts: a token bucket (a burst, then a steady rate), per buyer, with bounded memory. Pure:
a clock the tests move."""

from __future__ import annotations

import uuid

import pytest

from ticketing_common.errors import TooManyRequestsError
from ticketing_orders.attempts import TOO_MANY_ATTEMPTS, AttemptLimiter

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, *, rate: float = 5, burst: int = 10, max_buyers: int = 100) -> AttemptLimiter:
    return AttemptLimiter(rate=rate, burst=burst, max_buyers=max_buyers, clock=clock)


def test_a_buyer_may_make_burst_attempts_at_once_then_waits_for_the_next_token() -> None:
    clock, buyer = Clock(), uuid.uuid4()
    attempts = limiter(clock, rate=5, burst=10)

    assert [attempts.take(buyer) for _ in range(10)] == [0.0] * 10
    assert attempts.take(buyer) == pytest.approx(0.2)
    clock.now += 0.1
    assert attempts.take(buyer) == pytest.approx(0.1)  # a refused attempt spends nothing
    clock.now += 0.1
    assert attempts.take(buyer) == 0.0
    assert attempts.take(buyer) == pytest.approx(0.2)


def test_the_steady_rate_is_the_setting_and_the_bucket_never_holds_more_than_the_burst() -> None:
    clock, buyer = Clock(), uuid.uuid4()
    attempts = limiter(clock, rate=5, burst=10)
    allowed = 0
    for _ in range(1000):  # ten seconds of a buyer trying every 10 ms
        allowed += attempts.take(buyer) == 0.0
        clock.now += 0.01
    assert allowed == pytest.approx(10 + 5 * 10, abs=1)

    clock.now += 3600
    assert [attempts.take(buyer) for _ in range(11)].count(0.0) == 10


def test_buyers_are_counted_apart() -> None:
    clock, one, other = Clock(), uuid.uuid4(), uuid.uuid4()
    attempts = limiter(clock, burst=1)

    assert attempts.take(one) == 0.0
    assert attempts.take(one) > 0
    assert attempts.take(other) == 0.0


def test_check_refuses_with_429_and_a_retry_after_of_whole_seconds() -> None:
    clock, buyer = Clock(), uuid.uuid4()
    attempts = limiter(clock, rate=0.4, burst=1)
    attempts.check(buyer)

    with pytest.raises(TooManyRequestsError) as refused:
        attempts.check(buyer)

    assert (refused.value.status_code, refused.value.message) == (429, TOO_MANY_ATTEMPTS)
    assert refused.value.headers == {"Retry-After": "3"}  # 2.5 s, rounded up


def test_a_bucket_full_again_is_forgotten_so_idle_buyers_cost_no_memory() -> None:
    clock = Clock()
    attempts = limiter(clock, rate=5, burst=10)
    for _ in range(50):
        attempts.take(uuid.uuid4())
    assert len(attempts) == 50

    clock.now += 2.0  # burst / rate: every one of them is full again
    attempts.take(uuid.uuid4())

    assert len(attempts) == 1


def test_at_most_max_buyers_are_kept_the_least_recently_seen_forgotten_first() -> None:
    clock = Clock()
    attempts = limiter(clock, burst=1, max_buyers=3)
    buyers = [uuid.uuid4() for _ in range(4)]
    for buyer in buyers[:3]:
        attempts.take(buyer)
    attempts.take(buyers[0])  # seen again: now the most recent

    attempts.take(buyers[3])

    assert len(attempts) == 3
    assert attempts.take(buyers[1]) == 0.0  # forgotten: a fresh bucket
    assert attempts.take(buyers[0]) > 0  # kept


@pytest.mark.parametrize(("rate", "burst", "max_buyers"), [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_a_limiter_needs_a_positive_rate_burst_and_size(rate: float, burst: int, max_buyers: int) -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        AttemptLimiter(rate=rate, burst=burst, max_buyers=max_buyers)
