"""One benchmark run: start (or reach) the system, run the scenarios in an order that keeps them apart, check
the invariants, write the report. Timings are reported, never asserted; only broken invariants fail a run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ticketing_bench import client, flash_sale, onsale, report, revocation, scenarios, tracing_cost, wrk
from ticketing_bench.flash_sale import SaleSize
from ticketing_bench.onsale import OnSaleSize
from ticketing_bench.revocation import RevocationSize
from ticketing_bench.scenarios import ExpirySize, LagSize, PathsSize, SaturationSize
from ticketing_bench.system import System
from ticketing_bench.tracing_cost import TracingSize
from ticketing_launcher.check import check_until_settled

ALL_SCENARIOS = (
    "floor",
    "flash_sale",
    "revocation",
    "onsale",
    "expiry",
    "saturation",
    "event_lag",
    "paths",
    "tracing",
)
LONG_WINDOW = "3600"  # for the scenarios whose orders must not expire while they run
FLOORS = Path(__file__).resolve().parents[4] / "bench" / "floors"


@dataclass(frozen=True)
class Profile:
    name: str
    order_window: float
    sale: SaleSize
    paths: PathsSize
    lag: LagSize
    expiry: ExpirySize
    write_tickets: int  # fresh tickets for each of POST direct and POST gateway
    saturation: SaturationSize
    revocation: RevocationSize
    onsale: OnSaleSize
    tracing: TracingSize
    scenarios: tuple[str, ...] = ALL_SCENARIOS
    floor_seconds: float = 8  # the batched floor's saturated run


PROFILES = {
    "full": Profile(
        "full",
        order_window=15,
        sale=SaleSize(sellers=100, tickets=1000, buyers=5000, connections=64),
        paths=PathsSize(seconds=5, connections=64),
        lag=LagSize(events_per_second=500, seconds=10),
        expiry=ExpirySize(orders=10_000, spread_seconds=40, window_seconds=60),
        write_tickets=1200,
        saturation=SaturationSize(seconds=8, connections=64, tickets=5000, open_loop_seconds=8, open_loop_tickets=2500),
        revocation=RevocationSize(sessions=50),
        onsale=OnSaleSize(buyers=5000, tickets=1000, connections=64, control=50, lead_seconds=40, cheat_every=50),
        tracing=TracingSize(orders_per_second=80, seconds=6),
    ),
    "quick": Profile(
        "quick",
        order_window=4,
        sale=SaleSize(sellers=10, tickets=100, buyers=200, connections=16, declined_every=5, pay_after=0.5),
        paths=PathsSize(seconds=2, connections=16),
        lag=LagSize(events_per_second=100, seconds=3),
        expiry=ExpirySize(orders=100, spread_seconds=2),
        write_tickets=400,
        saturation=SaturationSize(seconds=2, connections=16, tickets=800, open_loop_seconds=2, open_loop_tickets=400),
        revocation=RevocationSize(sessions=20),
        onsale=OnSaleSize(buyers=500, tickets=100, connections=16, control=20, lead_seconds=15, pay_after=0.5),
        tracing=TracingSize(orders_per_second=20, seconds=3),
        scenarios=tuple(s for s in ALL_SCENARIOS if s != "floor"),
    ),
    # The invariant part of the quick run, smaller still: what `make test` runs (tools/bench/tests).
    "smoke": Profile(
        "smoke",
        order_window=3,
        sale=SaleSize(sellers=4, tickets=30, buyers=60, connections=8, declined_every=3, pay_after=0.3),
        paths=PathsSize(seconds=1, connections=8),
        lag=LagSize(events_per_second=40, seconds=1),
        expiry=ExpirySize(orders=10, spread_seconds=1),
        write_tickets=50,
        saturation=SaturationSize(seconds=1, connections=8, tickets=100, open_loop_seconds=1, open_loop_tickets=50),
        revocation=RevocationSize(sessions=5),
        onsale=OnSaleSize(
            buyers=40, tickets=10, connections=8, control=4, lead_seconds=10, pay_after=0.3, beyond_every=2
        ),
        tracing=TracingSize(orders_per_second=10, seconds=1),
        scenarios=("flash_sale", "onsale"),
    ),
}


@dataclass
class Outcome:
    folder: Path
    results: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results["invariants_ok"])


class Display:
    """Progress on stderr with rich: one bar per step."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )

    def counter(self, description: str, total: int) -> Callable[[], None]:
        task = self.progress.add_task(description, total=total)
        return lambda: self.progress.advance(task)

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        task = self.progress.add_task(description, total=1)
        try:
            yield
        finally:
            self.progress.advance(task)

    def say(self, text: str) -> None:
        self.progress.console.print(text)


def run(
    profile: Profile,
    *,
    results_root: Path,
    base_url: str | None = None,
    scenarios_wanted: tuple[str, ...] | None = None,
    console: Console | None = None,
) -> Outcome:
    started = datetime.now(UTC)
    folder = results_root / started.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    wanted = scenarios_wanted or profile.scenarios
    display = Display(console or Console(stderr=True))
    results: dict[str, Any] = {
        "meta": {
            "profile": profile.name,
            "started": started.isoformat(timespec="seconds"),
            "command": " ".join(["ticketing-bench", *sys.argv[1:]]),
            "cpus": os.cpu_count(),
            "load_before": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
            "local": base_url is None,
            "base_url": base_url,
            "order_window_seconds": profile.order_window,
            "scenarios": list(wanted),
        },
        "notes": [],
    }
    clock = time.monotonic()
    with display.progress:
        if "floor" in wanted and base_url is None:
            with display.step("the batched floor (bench/floors/batched_floor.py)"):
                results["floor"] = run_floor(folder, profile.floor_seconds, results["notes"])
        with display.step("start the system" if base_url is None else f"reach {base_url}"):
            system = (
                System.remote(base_url)
                if base_url
                else System.start(results_dir=folder, order_window=profile.order_window)
            )
        try:
            _run_loop(_scenarios(system, profile, wanted, results, display, folder))
        finally:
            with display.step("stop the system"):
                system.stop()
    results["meta"]["duration_s"] = time.monotonic() - clock
    results["meta"]["load_after"] = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    sale_ok = not results.get("flash_sale", {}).get("violations")
    onsale_ok = not results.get("onsale", {}).get("violations")
    final = results.get("final_check")
    results["invariants_ok"] = sale_ok and onsale_ok and (final is None or final["ok"])
    results["targets"] = report.targets(results)  # reported, never failing the run
    files = report.write(folder, results)
    return Outcome(folder, results, files)


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """The scenarios on uvloop when it is installed, the loop uvicorn picks for every service: the load generator
    shares the cores with the system it measures, and uvloop costs it less CPU per request (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def run_floor(folder: Path, seconds: float, notes: list[str]) -> dict[str, Any] | None:
    """The batched floor in its own processes, before the system starts, so both are measured in the same run."""
    out = (folder / "floor.json").resolve()  # the floor runs in bench/floors
    command = [sys.executable, str(FLOORS / "batched_floor.py"), "--json", str(out), "--seconds", str(seconds)]
    with (folder / "floor.log").open("w") as log:
        finished = subprocess.run(command, cwd=FLOORS, stdout=log, stderr=subprocess.STDOUT, timeout=600, check=False)
    if finished.returncode != 0 or not out.exists():
        notes.append(f"the batched floor failed (exit {finished.returncode}); see floor.log")
        return None
    floor: dict[str, Any] = json.loads(out.read_text())
    return floor


async def _scenarios(
    system: System,
    profile: Profile,
    wanted: tuple[str, ...],
    results: dict[str, Any],
    display: Display,
    folder: Path,
) -> None:
    notes: list[str] = results["notes"]
    log_path = folder / "system.log" if system.local else None
    if system.local:
        await asyncio.sleep(2)
        results["footprint"] = {"idle_rss_mib": {k: v["rss_mib"] for k, v in system.sample().items()}}
    buyers: list[client.User] = []
    sellers: list[client.User] = []

    if "flash_sale" in wanted:
        size = profile.sale
        sellers, buyers, tickets = await flash_sale.prepare(system, size, progress=display.counter)
        bench_cpu = psutil.Process().cpu_times()
        with flash_sale.Sampler(system) as sampler:
            record = await flash_sale.race(
                system, size, buyers, tickets, tick=display.counter("flash sale: buyers", size.buyers)
            )
            sale_sample, bench_sale = system.sample(), psutil.Process().cpu_times()
            with display.step("flash sale: wait until consistent and final"):
                settle = await flash_sale.settle(system, record, timeout=profile.order_window + 120)
        bench_after = psutil.Process().cpu_times()
        with display.step("flash sale: check every invariant"):
            orders, ticket_states = await flash_sale.read_back(system, record, size.connections)
            charges = await flash_sale.stripe_charges(system)
            violations = flash_sale.verify(
                record, orders, ticket_states, charges[0] if charges else None, charges[1] if charges else None
            )
            checker = settle.get("checker")
            if checker is not None and not checker["ok"]:
                violations += [f"checker: {v['invariant']}: {v['detail']} {v['refs']}" for v in checker["violations"]]
            if not settle["settled"]:
                violations.append("the system did not reach its final state in time")
        if charges is None:
            notes.append("Stripe charges not checked: STRIPE_API_BASE unknown.")
        results["flash_sale"] = {
            "summary": flash_sale.summarise(record, size),
            "settle": settle,
            "violations": violations,
            "refunded_charges": sum(charges[1].values()) if charges else None,
            "latencies_ms": {
                "order creation": [x * 1000 for x in record.order_latencies],
                "payment": [x * 1000 for x in record.payment_latencies],
            },
        }
        if system.local:
            used = sampler.cpu_used()
            first = sampler.samples[0][1]
            sale_used = {n: v["cpu_s"] - first.get(n, {"cpu_s": 0.0})["cpu_s"] for n, v in sale_sample.items()}
            orders_created = len(record.wins)
            results["footprint"].update(
                {
                    "peak_rss_mib": sampler.peak_rss(),
                    "sale_cpu_s": used,
                    "cpu_s_per_1000_orders": sum(used.values()) / orders_created * 1000 if orders_created else None,
                    "bench_cpu_s": (bench_after.user + bench_after.system) - (bench_cpu.user + bench_cpu.system),
                    # the buying and paying apart from the settle/check phase that follows it
                    "sale_only_cpu_s": sale_used,
                    "settle_cpu_s": {n: used.get(n, 0.0) - sale_used.get(n, 0.0) for n in used},
                    "bench_sale_cpu_s": (bench_sale.user + bench_sale.system) - (bench_cpu.user + bench_cpu.system),
                    "bench_sampler_cpu_s": sampler.cpu_s,
                    "bench_requests": len(record.order_statuses) + record.listing_reads + len(record.payment_statuses),
                    "samples": len(sampler.samples),
                }
            )
        display.say(
            f"flash sale: {len(record.wins)} orders, {len(violations)} violations"
            + ("" if not violations else f" — first: {violations[0]}")
        )

    if "revocation" in wanted:
        if "nats" in system.urls and "database" in system.urls:
            await system.wait_quiet(60)
        size_r = profile.revocation
        results["revocation"] = await revocation.measure(
            system, size_r, tick=display.counter("revocation: sessions signed out", size_r.sessions)
        )
        every = results["revocation"]["latency_ms"][revocation.ALL_SERVICES]
        display.say(
            f"revocation: {results['revocation']['measured_sessions']} sessions, p99 across services "
            f"{every.get('p99', float('nan')):.1f} ms, max {every.get('max', float('nan')):.1f} ms"
        )

    if "onsale" in wanted:
        if "nats" in system.urls and "database" in system.urls:
            await system.wait_quiet(60)
        results["onsale"] = await onsale.measure(
            system,
            profile.onsale,
            existing=buyers,
            order_window=profile.order_window,
            progress=display.counter,
            say=display.say,
        )
        found = results["onsale"]
        display.say(
            f"on-sale: {found['admission']['admitted']} admitted, draw verified {found['draw']['verified']}, "
            f"{found['admission']['order']['violations']} admission order violations, "
            f"{found['without_admission']['orders']} orders without admission, {len(found['violations'])} violations"
            + ("" if not found["violations"] else f" — first: {found['violations'][0]}")
        )

    others = [s for s in wanted if s not in ("flash_sale", "floor", "revocation", "onsale")]
    if not others:
        return await _final_check(system, results, display)
    if not system.local:
        for name in ("event_lag", "expiry", "tracing"):
            if name in others:
                notes.append(f"{name} skipped: it needs the system's processes (run without BASE_URL).")
        others = [s for s in others if s in ("paths", "saturation")]
    async with client.session(16) as http:
        if not sellers:
            sellers = await client.sign_up_many(http, system.gateway, "seller", 2)
        if not buyers:
            buyers = await client.sign_up_many(http, system.gateway, "buyer", 8)
    need = (
        (profile.expiry.orders if "expiry" in others else 0)
        + (
            int(profile.lag.events_per_second / scenarios.EVENTS_PER_ORDER * profile.lag.seconds) + 1
            if "event_lag" in others
            else 0
        )
        + (2 * profile.write_tickets if "paths" in others else 0)
        + (profile.saturation.tickets + profile.saturation.open_loop_tickets if "saturation" in others else 0)
        + (tracing_cost.RUNS * (profile.tracing.orders + tracing_cost.WARM_UP_ORDERS) if "tracing" in others else 0)
    )
    seed_base = system.urls.get("tickets", system.gateway)
    async with client.session(32) as http:
        seeded = [
            t["id"]
            for t in await client.create_tickets(
                http, seed_base, sellers[:1], need, concurrency=32, progress=display.counter("seed tickets", need)
            )
        ]
    if "nats" in system.urls and "database" in system.urls:
        with display.step("wait for the orders service's copies"):
            await system.wait_quiet(180)

    if "expiry" in others:
        ids, seeded = seeded[: profile.expiry.orders], seeded[profile.expiry.orders :]
        if system.local and profile.expiry.window_seconds:
            with display.step("restart orders with the expiry scenario's order window"):
                system.restart_service("orders", ORDER_EXPIRATION_SECONDS=str(int(profile.expiry.window_seconds)))
            notes.append(
                f"Before the expiry scenario the orders service was restarted with ORDER_EXPIRATION_SECONDS="
                f"{int(profile.expiry.window_seconds)}, so all its orders are pending at once."
            )
        results["expiry"] = await scenarios.expiry(
            system,
            profile.expiry,
            buyers=buyers[:8],
            ticket_ids=ids,
            tick=display.counter("expiry: orders", len(ids)),
        )
    if system.local and any(name in others for name in ("event_lag", "paths", "saturation", "tracing")):
        with display.step("restart orders with a long order window"):
            system.restart_service("orders", ORDER_EXPIRATION_SECONDS=LONG_WINDOW)
        notes.append(
            f"Before scenarios 2, 3 and 8 the orders service was restarted with ORDER_EXPIRATION_SECONDS={LONG_WINDOW}, "
            "so no expiry of theirs falls inside a measurement."
        )
    if "tracing" in others:  # set apart now: scenario 2 orders every ticket left in ``seeded``
        tracing_ids = seeded[: tracing_cost.RUNS * (profile.tracing.orders + tracing_cost.WARM_UP_ORDERS)]
        seeded = seeded[len(tracing_ids) :]
    if "saturation" in others and wrk.available():
        size_ = profile.saturation
        ids, open_ids, seeded = (
            seeded[: size_.tickets],
            seeded[size_.tickets : size_.tickets + size_.open_loop_tickets],
            seeded[size_.tickets + size_.open_loop_tickets :],
        )
        with display.step("saturation: wrk, drain, then open loop at half the rate"):
            results["saturation"] = await scenarios.saturation(
                system, size_, buyer=buyers[0], ticket_ids=ids, open_ids=open_ids
            )
    elif "saturation" in others:
        notes.append("saturation skipped: wrk is not installed (apt-get install wrk).")
    if "event_lag" in others:
        count = profile.lag.orders
        ids, seeded = seeded[:count], seeded[count:]
        await system.wait_quiet(60)
        results["event_lag"] = await scenarios.event_lag(
            system,
            profile.lag,
            buyers=buyers[:8],
            ticket_ids=ids,
            log_path=log_path,
            tick=display.counter("event lag: paced orders", len(ids)),
        )
    if "paths" in others:
        if not wrk.available():
            notes.append("paths skipped: wrk is not installed (apt-get install wrk).")
        else:
            half = len(seeded) // 2
            results["paths"] = await scenarios.paths(
                system,
                profile.paths,
                buyer=buyers[0],
                read_ids=seeded,
                write_ids_direct=seeded[:half],
                write_ids_gateway=seeded[half:],
                step=lambda name: display.say(f"wrk: {name}"),
            )
    if "tracing" in others:
        with display.step("tracing: paced orders with tracing off, on, sampled, off"):
            results["tracing"] = await tracing_cost.measure(
                system, profile.tracing, buyers=buyers[:8], ticket_ids=tracing_ids, tick=lambda: None
            )
        found = results["tracing"]
        notes.extend(
            f"tracing: {problem} (the figures of that run are not comparable)" for problem in found["problems"]
        )
        display.say(
            f"tracing: on costs {found['on_cost_ms_per_order']} ms CPU per order, off "
            f"{found['off_cost_us_per_order']:.2f} µs; {found['whole_traces']} whole traces"
        )
    await _final_check(system, results, display)


async def _final_check(system: System, results: dict[str, Any], display: Display) -> None:
    """The checker over everything every scenario did, once the system is quiet."""
    if "database" not in system.urls:
        return
    with display.step("final consistency check"):
        report_ = await check_until_settled(
            settle=60, database_url=system.urls["database"], nats_url=system.urls.get("nats")
        )
    results["final_check"] = {
        "ok": report_.ok,
        "counts": report_.counts,
        "violations": [f"{v.invariant}: {v.detail} {v.refs}" for v in report_.violations[:100]],
    }
