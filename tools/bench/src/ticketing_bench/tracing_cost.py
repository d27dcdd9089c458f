"""Scenario 8: what tracing costs.

The same paced orders through the gateway (each with its whole event chain: tickets, expiration and payments handle
``order.created``, orders the hold's ``ticket.updated``) four times: tracing off; on, every trace recorded; on, one
trace in ten recorded (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``); off again. "On" restarts the processes of
that chain with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at an OTLP receiver in a process of its own (a collector's
stand-in, outside the system's CPU); the two "off" runs bracket them, so a drift of the machine shows as a
difference between them. Before each run the five processes are restarted and warmed up with a few orders: a
process that served the earlier scenarios costs more per order than a fresh one. Off, every hook is one check of ``tracing.tracer``: timed here per call, times the
hooks one order passes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import timeit
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
from opentelemetry.trace import SpanKind

from ticketing_bench import client
from ticketing_bench.client import User
from ticketing_bench.scenarios import create_orders_paced
from ticketing_bench.system import System
from ticketing_common import tracing
from ticketing_common.embedded import free_port, wait_for_port

TRACED_COMPONENTS = ("gateway", "orders", "tickets", "expiration", "payments")
CHAIN_SERVICES = frozenset(TRACED_COMPONENTS)
# The hooks one order passes while tracing is off: two requests (gateway, orders), three staged events
# (order.created, the hold's ticket.updated, the expiry's schedule), four handled events; no log line.
OFF_HOOKS_PER_ORDER = 2 + 3 + 4
WARM_UP_ORDERS = 10
RUNS = 4
SAMPLED_SHARE = 0.1  # OTEL_TRACES_SAMPLER_ARG of the sampled run


@dataclass(frozen=True)
class TracingSize:
    orders_per_second: float
    seconds: float

    @property
    def orders(self) -> int:
        return int(self.orders_per_second * self.seconds)


def off_hook_ns() -> dict[str, float]:
    """Nanoseconds per call of each hook while tracing is off (this process has no tracer)."""
    assert tracing.tracer is None
    headers: dict[str, str] = {}
    calls = 200_000
    return {
        "inject": timeit.timeit(lambda: tracing.inject(headers), number=calls) / calls * 1e9,
        "current_ids": timeit.timeit(tracing.current_ids, number=calls) / calls * 1e9,
        "tracer check": timeit.timeit(lambda: tracing.tracer is None, number=calls) / calls * 1e9,
    }


def span_cost_us(endpoint: str, spans: int = 5000) -> float:
    """CPU microseconds of one recorded span in this process, exported to ``endpoint`` (a handled event's: the
    consumer span with its attributes), creation and export included."""
    parent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    attributes = {
        "messaging.system": "nats",
        "messaging.destination.name": "order.created",
        "messaging.message.id": "x",
    }
    tracing.configure_tracing("bench", endpoint=endpoint)
    try:
        started = time.process_time()
        for i in range(spans):
            with tracing.span("order.created process", kind=SpanKind.CONSUMER, parent=parent, attributes=attributes):
                pass
            if i % 1000 == 999:
                tracing.flush_tracing()  # as the processor's schedule would: its queue holds 2,048
        tracing.flush_tracing()
        return (time.process_time() - started) / spans * 1e6
    finally:
        tracing.shutdown_tracing()


async def measure(
    system: System,
    size: TracingSize,
    *,
    buyers: list[User],
    ticket_ids: list[str],
    tick: Callable[[], None],
) -> dict[str, Any]:
    """CPU per order with tracing off, on, off; spans received per order and whole traces while on."""
    count = size.orders
    assert len(ticket_ids) >= RUNS * (count + WARM_UP_ORDERS), "every run and every warm-up on fresh tickets"
    runs: dict[str, dict[str, Any]] = {}
    batches = iter(ticket_ids[i * count : (i + 1) * count] for i in range(RUNS))
    warm_ups = iter(ticket_ids[RUNS * count + i * WARM_UP_ORDERS :][:WARM_UP_ORDERS] for i in range(RUNS))
    off = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_TRACES_SAMPLER": "", "OTEL_TRACES_SAMPLER_ARG": ""}

    async def run(name: str, **env: str) -> int:
        """Every run on freshly started processes (one that served the earlier scenarios costs more per order)."""
        await _restart(system, **env)
        warmed = await _warm_up(system, buyers, next(warm_ups))
        runs[name] = await _run(system, buyers, next(batches), size.orders_per_second, tick)
        return warmed

    await run("off (before)", **off)
    with Receiver() as receiver:
        warmed = await run("on", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        await asyncio.sleep(1.5)  # the processes' span batches (every 0.5 s)
        received = receiver.traces()
        hook_ns = off_hook_ns()
        span_us = span_cost_us(receiver.endpoint)
        sampler = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(SAMPLED_SHARE)}
        await run(f"on, 1 trace in {round(1 / SAMPLED_SHARE)} recorded", **sampler)
    await run("off (after)", **off)

    orders_on = runs["on"]["orders"] + warmed  # the receiver holds the warm-up's traces too
    order_traces = [t for t in received if t["name"] == "POST /api/orders"]
    whole = [t for t in order_traces if set(t["services"]) >= CHAIN_SERVICES]
    missing: dict[str, int] = {}
    for t in order_traces:
        for service in CHAIN_SERVICES - set(t["services"]):
            missing[service] = missing.get(service, 0) + 1
    off_cpu = [runs[k]["cpu_ms_per_order"] for k in ("off (before)", "off (after)")]
    off_mean = sum(off_cpu) / len(off_cpu) if all(x is not None for x in off_cpu) else None
    on_cpu = runs["on"]["cpu_ms_per_order"]
    sampled_cpu = runs[f"on, 1 trace in {round(1 / SAMPLED_SHARE)} recorded"]["cpu_ms_per_order"]
    problems = [
        f"{name}: {run['orders']} of {count} orders placed" for name, run in runs.items() if run["orders"] < count
    ]
    return {
        "problems": problems,
        "orders_per_s": size.orders_per_second,
        "runs": runs,
        "off_cpu_ms_per_order": off_mean,
        "on_cpu_ms_per_order": on_cpu,
        "on_cost_ms_per_order": on_cpu - off_mean if on_cpu is not None and off_mean is not None else None,
        "on_cost_pct": 100 * (on_cpu - off_mean) / off_mean if on_cpu is not None and off_mean else None,
        "sampled_share": SAMPLED_SHARE,
        "sampled_cost_ms_per_order": sampled_cpu - off_mean
        if sampled_cpu is not None and off_mean is not None
        else None,
        "off_drift_pct": 100 * abs(off_cpu[0] - off_cpu[1]) / off_mean if off_mean else None,
        "off_hook_ns": hook_ns,
        "off_cost_us_per_order": OFF_HOOKS_PER_ORDER * max(hook_ns.values()) / 1000,
        "span_cost_us": span_us,
        "spans_per_order": sum(t["spanCount"] for t in whole) / len(whole) if whole else None,
        "whole_traces": len(whole),
        "traces_received": len(received),
        "other_traces": dict(Counter(t["name"] for t in received if t["name"] != "POST /api/orders").most_common(5)),
        "order_traces_missing_a_process": missing,
        "whole_traces_pct": 100 * len(whole) / orders_on if orders_on else None,
    }


async def _restart(system: System, **env: str) -> None:
    for name in TRACED_COMPONENTS:
        system.restart_service(name, **env)


async def _run(
    system: System, buyers: list[User], ticket_ids: list[str], rate: float, tick: Callable[[], None]
) -> dict[str, Any]:
    await system.wait_quiet(60)
    before = _cpu_by_process(system)
    started = time.monotonic()
    created = len(await create_orders_paced(system, buyers, ticket_ids, rate, tick=tick, through_gateway=True))
    driven = time.monotonic() - started
    await system.wait_quiet(60)  # every event of these orders handled: the chain's CPU is all in
    by_process: dict[str, float] = {}
    for (name, pid), cpu_s in _cpu_by_process(system).items():
        # A process that exited during the run (an autovacuum worker, a backend) drops out: its share is lost, never
        # subtracted; one that started during it counts whole.
        by_process[name] = by_process.get(name, 0.0) + cpu_s - before.get((name, pid), 0.0)
    cpu = sum(by_process.values())
    by_process = {name: 1000 * cpu_s / created for name, cpu_s in by_process.items()} if created else {}
    return {
        "orders": created,
        "seconds": driven,
        "cpu_ms_per_order": 1000 * cpu / created if created else None,
        "cpu_ms_per_order_by_process": by_process,
    }


def _cpu_by_process(system: System) -> dict[tuple[str, int], float]:
    """CPU seconds of every process of the system, by (component, pid)."""
    found: dict[tuple[str, int], float] = {}
    for name, group in system.processes().items():
        for process in group:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                found[(name, process.pid)] = times.user + times.system
    return found


async def _warm_up(system: System, buyers: list[User], ticket_ids: list[str]) -> int:
    """A few orders after the restarts, so first-call costs (connections, caches) stay out of the measurement;
    returns how many were placed."""
    placed = 0
    async with client.session(4) as http:
        for i, ticket_id in enumerate(ticket_ids):
            reply = await client.call(
                http, "POST", system.gateway + "/api/orders", user=buyers[i % len(buyers)], json={"ticketId": ticket_id}
            )
            placed += reply.status == 201
    return placed


class Receiver:
    """``ticketing traces`` in its own process, for as long as the block runs."""

    def __enter__(self) -> Receiver:
        otlp_port, viewer_port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{otlp_port}"
        self.viewer = f"http://127.0.0.1:{viewer_port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ticketing_launcher",
                "traces",
                "--otlp-port",
                str(otlp_port),
                "--port",
                str(viewer_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", otlp_port, 30, self.process)
        wait_for_port("127.0.0.1", viewer_port, 30, self.process)
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(15)

    def traces(self) -> list[dict[str, Any]]:
        """The summaries of the traces it holds (the viewer's JSON), newest first."""
        reply = httpx.get(f"{self.viewer}/api/traces", params={"limit": 1000}, timeout=30)
        reply.raise_for_status()
        traces: list[dict[str, Any]] = reply.json()["traces"]
        return traces
