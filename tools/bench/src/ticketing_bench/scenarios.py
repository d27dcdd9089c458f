"""Scenarios 2 to 4: read and write paths against their ceiling (wrk), event lag at a steady rate, and expiry
punctuality."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

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


async def paced(count: int, rate: float, make: Callable[[int], Any], *, concurrency: int = 64) -> list[Any]:
    """Start ``make(i)`` at t0 + i / rate (an open loop), with at most ``concurrency`` in flight."""
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one(i: int) -> Any:
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with gate:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def create_orders_paced(
    system: System, buyers: list[User], ticket_ids: list[str], rate: float, *, tick: Callable[[], None]
) -> list[dict[str, Any]]:
    """One order per ticket, at ``rate`` orders/s, direct to the orders service (when known)."""
    base = system.urls.get("orders", system.gateway)
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
    started = time.monotonic()
    created = await create_orders_paced(system, buyers, ticket_ids[:count], rate, tick=tick)
    driven = time.monotonic() - started
    quiet = await system.wait_quiet(120)
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
        "listeners": dict(sorted(listeners.items())),
    }


# -- scenario 4 ------------------------------------------------------------------------------------------------


@dataclass
class ExpirySize:
    orders: int
    spread_seconds: float


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
    for event in stored:
        if event.subject == "order.expired":
            order_id = event.data.get("orderId")
            if order_id in expires:
                fired[order_id] = (event.stored_at - expires[order_id]).total_seconds() * 1000
        elif event.subject == "order.cancelled":
            order_id = event.data.get("id")
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
        "lateness_ms": {
            "order.expired stored": summary(list(fired.values())),
            "cancellation (order.cancelled ce-time)": summary(list(cancelled_commit.values())),
            "order.cancelled stored": summary(list(cancelled_stored.values())),
        },
        "samples_ms": sorted(cancelled_commit.values()),
    }
