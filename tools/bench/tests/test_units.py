"""The bench's own arithmetic and checks: quantiles from Prometheus buckets, wrk's output, and the flash sale's
verification catching each kind of broken invariant."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from ticketing_bench import wrk
from ticketing_bench.__main__ import choose_profile
from ticketing_bench.client import User
from ticketing_bench.flash_sale import SaleRecord, Win, verify
from ticketing_bench.runner import PROFILES
from ticketing_bench.stats import bucket_max, histogram_quantile, percentile

BUYER = User("u1", "b@example.com", "session=x")
NOW = datetime.now(UTC)


def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    buckets = {0.001: 0.0, 0.002: 50.0, 0.005: 90.0, 0.01: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.002)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.0015)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.0095)
    assert bucket_max(buckets) == 0.01


def test_histogram_quantile_of_an_empty_histogram_is_nan_and_above_the_last_bound_is_that_bound() -> None:
    assert math.isnan(histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}))
    assert histogram_quantile(0.99, {0.1: 10.0, math.inf: 100.0}) == 0.1


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert math.isnan(percentile([], 50))


def test_wrk_result_line_is_parsed_with_statuses_and_latency_in_ms() -> None:
    line = (
        'WRK_RESULT {"duration_us": 2000000, "requests": 1000, "bytes": 1, "errors": {"connect": 0, "read": 1, '
        '"write": 0, "status": 3, "timeout": 0}, "statuses": {"201": 997, "400": 3}, "wrapped": 0, '
        '"latency_us": {"min": 100, "max": 9000, "mean": 1500.5, "p50": 1200, "p95": 4000, "p99": 8000}, '
        '"cdf": [[50, 1200], [99, 8000]]}'
    )
    result = wrk.parse("post", "http://x/api/orders", "POST", 64, "Running 2s test\n" + line + "\n")
    assert result.rps == 500
    assert result.statuses == {"201": 997, "400": 3}
    assert result.socket_errors["read"] == 1
    assert result.latency_ms["p99"] == 8.0
    assert result.cdf_ms[-1] == (99.0, 8.0)


def test_wrk_without_a_result_line_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no result"):
        wrk.parse("x", "u", "GET", 1, "unable to connect", "")


def _sale() -> SaleRecord:
    record = SaleRecord(tickets=["t1", "t2"])
    record.wins = [
        Win("o1", "t1", BUYER, NOW, pays=True, paid=True),
        Win("o2", "t2", BUYER, NOW, pays=False),
    ]
    return record


def _good() -> tuple[dict[str, dict[str, object]], dict[str, dict[str, object]], dict[str, int]]:
    orders: dict[str, dict[str, object]] = {
        "o1": {"status": "complete", "ticket": {"version": 1}},
        "o2": {"status": "cancelled", "ticket": {"version": 2}},
    }
    tickets: dict[str, dict[str, object]] = {
        "t1": {"orderId": "o1", "version": 1},
        "t2": {"orderId": None, "version": 2},
    }
    return orders, tickets, {"o1": 1}


def test_a_consistent_sale_has_no_violation() -> None:
    orders, tickets, charges = _good()
    assert verify(_sale(), orders, tickets, charges) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda o, t, c: o["o1"].update(status="created"), "paid order o1 is created"),
        (lambda o, t, c: c.update(o1=2), "paid order o1 has 2 charges"),
        (lambda o, t, c: c.update(o1=0), "paid order o1 has 0 charges"),
        (lambda o, t, c: o["o2"].update(status="created"), "unpaid order o2 is created"),
        (lambda o, t, c: t["t2"].update(orderId="o2"), "ticket t2 of unpaid order o2 is not back for sale"),
        (lambda o, t, c: c.update(o2=1), "unpaid order o2 has 1 charges"),
        (lambda o, t, c: t["t1"].update(orderId="o9"), "ticket t1 of paid order o1 is held by o9"),
        (lambda o, t, c: t["t2"].update(version=3), "orders' copy of ticket t2 at version 2, tickets at 3"),
        (lambda o, t, c: c.update(o7=1), "1 charges for order o7"),
        (lambda o, t, c: o.pop("o1"), "order o1 or its ticket t1 cannot be read back"),
    ],
)
def test_each_broken_invariant_is_reported(breakage: object, expected: str) -> None:
    orders, tickets, charges = _good()
    breakage(orders, tickets, charges)  # type: ignore[operator]
    problems = verify(_sale(), orders, tickets, charges)
    assert any(expected in p for p in problems), problems


def test_a_ticket_paid_twice_is_reported() -> None:
    record = _sale()
    record.wins.append(Win("o3", "t1", BUYER, NOW, pays=True, paid=True))
    orders, tickets, charges = _good()
    orders["o3"] = {"status": "complete", "ticket": {"version": 1}}
    charges["o3"] = 1
    assert any("ticket t1 sold 2 times" in p for p in verify(record, orders, tickets, charges))


def test_sale_resizes_only_the_flash_sale_of_a_profile_and_names_it() -> None:
    full = PROFILES["full"]
    resized = choose_profile("full", "200,1000")
    assert (resized.sale.tickets, resized.sale.buyers, resized.sale.connections) == (200, 1000, full.sale.connections)
    assert resized.sale.pay_after == full.sale.pay_after
    assert resized.order_window == full.order_window
    assert resized.name == "full, sale 200,1000"
    assert choose_profile("quick", "10,20,4").sale.connections == 4
    assert choose_profile("quick") is PROFILES["quick"]
    for wrong in ("200", "1,2,3,4", "a,b", "0,10"):
        with pytest.raises(ValueError, match="--sale wants"):
            choose_profile("full", wrong)
