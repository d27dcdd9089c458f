"""Scenarios 2 to 5: read and write paths against their ceiling (wrk), event lag at a steady rate, expiry
punctuality, and saturation (successful orders/s with every consumer drained, CPU per order, open-loop latency)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from ticketing_bench import bus, client, wrk
from ticketing_bench.client import User
from ticketing_bench.stats import (
    bucket_max,
    counter_values,
    diff_buckets,
    histogram_buckets,
    histogram_quantile,
    summary,
)
from ticketing_bench.system import System

LISTENING_SERVICES = ("tickets", "orders", "expiration", "payments")


# -- scenario 2 ------------------------------------------------------------------------------------------------


@dataclass
class PathsSize:
    seconds: float
    connections: int
    threads: int = 2


async def paths(
    system: System,
    size: PathsSize,
    *,
    buyer: User,
    read_ids: list[str],
    write_ids_direct: list[str],
    write_ids_gateway: list[str],
    step: Callable[[str], None],
) -> dict[str, Any]:
    """Every measurement with the same client (wrk) in one run; waits for a quiet system between them, so the
    event work a run leaves behind (its orders' events) does not weigh on the next one."""
    runs: dict[str, wrk.WrkResult] = {}
    quiet: dict[str, float | None] = {}
    order_body = '{"ticketId": "{id}"}'
    plan: list[tuple[str, str, str, dict[str, Any]]] = []
    if system.local:
        plan += [
            ("tickets /healthz (trivial)", system.urls["tickets"], "/healthz", {}),
            ("GET /api/tickets/:id direct", system.urls["tickets"], "/api/tickets/{id}", {"ids": read_ids}),
        ]
    plan.append(("GET /api/tickets/:id gateway", system.gateway, "/api/tickets/{id}", {"ids": read_ids}))
    if system.local:
        plan += [
            ("orders /healthz (trivial)", system.urls["orders"], "/healthz", {}),
            (
                "POST /api/orders direct",
                system.urls["orders"],
                "/api/orders",
                {"method": "POST", "body": order_body, "cookie": buyer.cookie, "ids": write_ids_direct, "pick": "next"},
            ),
        ]
    plan.append(
        (
            "POST /api/orders gateway",
            system.gateway,
            "/api/orders",
            {"method": "POST", "body": order_body, "cookie": buyer.cookie, "ids": write_ids_gateway, "pick": "next"},
        )
    )
    for name, base, path, options in plan:
        step(name)
        if "nats" in system.urls and "database" in system.urls:
            quiet[name] = await system.wait_quiet(90)
        runs[name] = await asyncio.to_thread(
            wrk.run,
            name,
            base,
            path,
            connections=size.connections,
            threads=size.threads,
            seconds=size.seconds,
            **options,
        )
    ratios: dict[str, float] = {}

    def ratio(label: str, numerator: str, denominator: str) -> None:
        if numerator in runs and denominator in runs and runs[denominator].rps:
            ratios[label] = runs[numerator].rps / runs[denominator].rps

    ratio("POST /api/orders direct / orders trivial", "POST /api/orders direct", "orders /healthz (trivial)")
    ratio("GET /api/tickets/:id direct / tickets trivial", "GET /api/tickets/:id direct", "tickets /healthz (trivial)")
    ratio("POST /api/orders gateway / direct", "POST /api/orders gateway", "POST /api/orders direct")
    ratio("GET /api/tickets/:id gateway / direct", "GET /api/tickets/:id gateway", "GET /api/tickets/:id direct")
    return {
        "client": "wrk",
        "connections": size.connections,
        "threads": size.threads,
        "seconds": size.seconds,
        "runs": {name: run.to_dict() for name, run in runs.items()},
        "ratios": ratios,
        "quiet_wait_s": quiet,
    }


# -- scenario 3 ------------------------------------------------------------------------------------------------


@dataclass
class LagSize:
    events_per_second: float  # handled events per second, over every listener
    seconds: float

    @property
    def orders_per_second(self) -> float:
        return self.events_per_second / EVENTS_PER_ORDER

    @property
    def orders(self) -> int:
        return math.ceil(self.orders_per_second * self.seconds)


EVENTS_PER_ORDER = 4  # order.created to tickets, expiration and payments; the hold's ticket.updated to orders


async def paced(
    count: int, rate: float, make: Callable[[int], Any], *, concurrency: int = 64, started: float | None = None
) -> list[Any]:
    """Start ``make(i)`` at t0 + i / rate (an open loop), with at most ``concurrency`` in flight."""
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic() if started is None else started

    async def one(i: int) -> Any:
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with gate:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def create_orders_paced(
    system: System,
    buyers: list[User],
    ticket_ids: list[str],
    rate: float,
    *,
    tick: Callable[[], None],
    through_gateway: bool = False,
) -> list[dict[str, Any]]:
    """One order per ticket, at ``rate`` orders/s, direct to the orders service (when known) unless
    ``through_gateway``."""
    base = system.gateway if through_gateway else system.urls.get("orders", system.gateway)
    created: list[dict[str, Any]] = []
    async with client.session(64) as http:

        async def make(i: int) -> None:
            reply = await client.call(
                http, "POST", base + "/api/orders", user=buyers[i % len(buyers)], json={"ticketId": ticket_ids[i]}
            )
            if reply.status == 201:
                created.append(reply.body)
            tick()

        await paced(len(ticket_ids), rate, make)
    return created


async def _scrape(system: System) -> dict[str, str]:
    return {svc: await system.metrics(svc) for svc in LISTENING_SERVICES}


async def event_lag(
    system: System,
    size: LagSize,
    *,
    buyers: list[User],
    ticket_ids: list[str],
    log_path: Path | None,
    tick: Callable[[], None],
) -> dict[str, Any]:
    """Drive order creations so the listeners handle ``size.events_per_second`` events/s in total; the lag of every
    listener from its /metrics histogram (diff before/after, quantiles interpolated in the buckets) and, exactly,
    from the stream's ce-time to each handler's log line."""
    rate = size.orders_per_second
    count = min(len(ticket_ids), size.orders)
    before = await _scrape(system)
    sequence = await bus.last_sequence(system.urls["nats"])
    log_offset = log_path.stat().st_size if log_path else 0  # noqa: ASYNC240 (one stat)
    cpu_before = system.sample()
    psutil.cpu_percent()
    started = time.monotonic()
    created = await create_orders_paced(system, buyers, ticket_ids[:count], rate, tick=tick)
    driven = time.monotonic() - started
    utilisation = psutil.cpu_percent()  # the whole machine over the drive, load generator included
    quiet = await system.wait_quiet(120)
    cpu = cpu_used(cpu_before, system.sample())
    after = await _scrape(system)

    listeners: dict[str, Any] = {}
    handled_total = 0.0
    for svc in LISTENING_SERVICES:
        lag_after = histogram_buckets(after[svc], "event_lag_seconds", "subject")
        lag_before = histogram_buckets(before[svc], "event_lag_seconds", "subject")
        for subject, buckets in lag_after.items():
            delta = diff_buckets(buckets, lag_before.get(subject))
            observed = max(delta.values(), default=0.0)
            if observed <= 0:
                continue
            listeners[f"{svc} <- {subject}"] = {
                "events": int(observed),
                "histogram_p50_ms": histogram_quantile(0.5, delta) * 1000,
                "histogram_p99_ms": histogram_quantile(0.99, delta) * 1000,
                "histogram_max_bucket_ms": bucket_max(delta) * 1000,
            }
        handled_before = counter_values(before[svc], "events_handled_total")
        for labels, value in counter_values(after[svc], "events_handled_total").items():
            if dict(labels).get("outcome") == "ok":
                handled_total += value - handled_before.get(labels, 0.0)

    if log_path is not None:
        stored = await bus.read_since(system.urls["nats"], sequence)
        ce_time = {e.headers.get("ce-id"): e.ce_time for e in stored}
        exact: dict[str, list[float]] = {}
        for handled in bus.handled_events(log_path, offset=log_offset):
            published = ce_time.get(handled.event_id)
            if handled.outcome == "ok" and published is not None:
                key = f"{handled.service} <- {handled.subject}"
                exact.setdefault(key, []).append((handled.logged_at - published).total_seconds() * 1000)
        for key, values in exact.items():
            listeners.setdefault(key, {})["exact_ms"] = summary(values)
    return {
        "target_events_per_s": size.events_per_second,
        "orders_per_s_target": rate,
        "orders_created": len(created),
        "drive_seconds": driven,
        "handled_events": int(handled_total),
        "handled_events_per_s": handled_total / driven if driven else 0.0,
        "drain_after_drive_s": quiet,
        "machine_utilisation_pct": utilisation,
        "cpu_ms_per_order": 1000 * cpu / len(created) if created and cpu is not None else None,
        "listeners": dict(sorted(listeners.items())),
    }


# -- scenario 4 ------------------------------------------------------------------------------------------------


@dataclass
class ExpirySize:
    orders: int
    spread_seconds: float
    window_seconds: float | None = None  # the orders service restarted with this order window first (None: as is)


async def expiry(
    system: System, size: ExpirySize, *, buyers: list[User], ticket_ids: list[str], tick: Callable[[], None]
) -> dict[str, Any]:
    """``size.orders`` orders created over ``spread_seconds``, so they expire within the same ``spread_seconds``;
    lateness of each relative to its expiresAt: the fired ``order.expired`` (stored), the cancellation
    (``order.cancelled``'s ce-time, taken in the cancelling transaction) and ``order.cancelled`` stored."""
    sequence = await bus.last_sequence(system.urls["nats"])
    created = await create_orders_paced(
        system, buyers, ticket_ids[: size.orders], size.orders / size.spread_seconds, tick=tick
    )
    expires = {o["id"]: datetime.fromisoformat(o["expiresAt"]) for o in created}
    last = max(expires.values())
    await asyncio.sleep(max(0.0, last.timestamp() - time.time()) + 1.0)
    await system.wait_quiet(120)
    stored = await bus.read_since(system.urls["nats"], sequence, "order.>")
    fired: dict[str, float] = {}
    cancelled_commit: dict[str, float] = {}
    cancelled_stored: dict[str, float] = {}
    expired_count: dict[str, int] = {}
    cancelled_count: dict[str, int] = {}
    for event in stored:
        if event.subject == "order.expired":
            order_id = event.data.get("orderId")
            if order_id in expires:
                expired_count[order_id] = expired_count.get(order_id, 0) + 1
                fired[order_id] = (event.stored_at - expires[order_id]).total_seconds() * 1000
        elif event.subject == "order.cancelled":
            order_id = event.data.get("id")
            if order_id in expires:
                cancelled_count[order_id] = cancelled_count.get(order_id, 0) + 1
            if order_id in expires and event.ce_time is not None:
                cancelled_commit[order_id] = (event.ce_time - expires[order_id]).total_seconds() * 1000
                cancelled_stored[order_id] = (event.stored_at - expires[order_id]).total_seconds() * 1000
    window = (max(expires.values()) - min(expires.values())).total_seconds() if expires else 0.0
    return {
        "orders": len(created),
        "expiry_window_s": window,
        "cancelled": len(cancelled_commit),
        "missing_cancellations": len(expires) - len(cancelled_commit),
        "early": sum(v < 0 for v in cancelled_commit.values()),
        # exactly once, as the stream holds them (a redelivered handling is fine; a second cancellation is not)
        "cancelled_more_than_once": sum(n > 1 for n in cancelled_count.values()),
        "expired_events_more_than_once": sum(n > 1 for n in expired_count.values()),
        "peak_pending": peak_pending(created, size.window_seconds or system.order_window),
        "lateness_ms": {
            "order.expired stored": summary(list(fired.values())),
            "cancellation (order.cancelled ce-time)": summary(list(cancelled_commit.values())),
            "order.cancelled stored": summary(list(cancelled_stored.values())),
        },
        "samples_ms": sorted(cancelled_commit.values()),
    }


def peak_pending(created: list[dict[str, Any]], window_seconds: float | None) -> int | None:
    """The most orders pending at once: each from expiresAt - the order window until its expiresAt."""
    if not created or window_seconds is None:
        return None
    ends = sorted(datetime.fromisoformat(o["expiresAt"]) for o in created)
    starts = sorted(e - timedelta(seconds=window_seconds) for e in ends)
    peak = open_ = 0
    j = 0
    for start in starts:
        while j < len(ends) and ends[j] <= start:
            j += 1
            open_ -= 1
        open_ += 1
        peak = max(peak, open_)
    return peak


def cpu_used(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> float | None:
    """CPU seconds between two samples over every process of the system (None when they are not ours to see)."""
    if not after:
        return None
    return sum(values["cpu_s"] - before.get(name, {"cpu_s": 0.0})["cpu_s"] for name, values in after.items())


# -- scenario 5 ------------------------------------------------------------------------------------------------


@dataclass
class SaturationSize:
    seconds: float
    connections: int
    tickets: int  # fresh, for the saturated run: more than it can order, so nothing wraps round
    open_loop_seconds: float
    open_loop_tickets: int


async def saturation(
    system: System, size: SaturationSize, *, buyer: User, ticket_ids: list[str], open_ids: list[str]
) -> dict[str, Any]:
    """Saturated successful orders/s through the gateway (wrk), each with its whole event chain: the clock stops
    when every consumer has drained and every outbox row is sent. CPU per successful order over every process of
    the system (PostgreSQL and nats-server included, wrk excluded). Then ``POST /api/orders`` open-loop at half
    that rate, latency taken from each request's planned start (so a stall counts against it)."""
    await system.wait_quiet(90)
    before = system.sample()
    started = time.monotonic()
    run = await asyncio.to_thread(
        wrk.run,
        "saturated POST /api/orders gateway",
        system.gateway,
        "/api/orders",
        method="POST",
        body='{"ticketId": "{id}"}',
        cookie=buyer.cookie,
        ids=ticket_ids,
        pick="next",
        connections=size.connections,
        threads=2,
        seconds=size.seconds,
    )
    load_ended = time.monotonic()
    drained = await system.wait_quiet(180)
    ended = time.monotonic()
    cpu = cpu_used(before, system.sample())
    ok = run.statuses.get("201", 0)
    rate = ok / (ended - started) if ok else 0.0
    result: dict[str, Any] = {
        "wrk": run.to_dict(),
        "successful_orders": ok,
        "seconds_to_drained": ended - started,
        "drain_after_load_s": ended - load_ended if drained is not None else None,
        "drained": drained is not None,
        "orders_per_s": rate,
        "cpu_ms_per_order": 1000 * cpu / ok if ok and cpu is not None else None,
    }
    half = rate / 2
    count = min(len(open_ids), math.ceil(half * size.open_loop_seconds))
    if half <= 0 or count == 0:
        return result
    await system.wait_quiet(90)
    latencies: list[float] = []
    statuses: list[int] = []
    async with client.session(256) as http:
        planned = time.monotonic() + 0.1

        async def make(i: int) -> None:
            try:
                reply = await client.call(
                    http, "POST", system.gateway + "/api/orders", user=buyer, json={"ticketId": open_ids[i]}
                )
                statuses.append(reply.status)
            except (aiohttp.ClientError, TimeoutError):
                statuses.append(0)
            latencies.append((time.monotonic() - (planned + i / half)) * 1000)

        await paced(count, half, make, concurrency=256, started=planned)
    result["open_loop"] = {
        "rate": half,
        "requests": count,
        "statuses": {str(k): statuses.count(k) for k in sorted(set(statuses))},
        "latency_ms": summary(latencies),
    }
    return result
