"""CPU per order of every process, and optionally a py-spy profile of each service, while orders are created.

    uv run python bench/profiling/paced_cpu.py                       # 1,250 orders paced at 125/s, CPU per order
    uv run python bench/profiling/paced_cpu.py --rate 0              # saturated: 64 connections, as fast as it goes
    uv run --with py-spy python bench/profiling/paced_cpu.py --profile /tmp/prof   # + py-spy raw stacks per service

Starts the whole system as the bench does (fresh state), seeds the tickets, waits until every copy is made, then
samples each process's CPU seconds (psutil) around the orders and until every event is handled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ticketing_bench import client, scenarios
from ticketing_bench.system import System

SPY = ("py-spy", "record", "--format", "raw", "--rate", "200", "--nonblocking")
PROFILED = ("orders", "tickets", "expiration", "payments")


def start_spies(
    system: System, folder: Path, services: tuple[str, ...] = PROFILED, prefix: str = ""
) -> list[subprocess.Popen[bytes]]:
    """py-spy on each of ``services``' processes, writing raw (collapsed) stacks to
    ``folder/<prefix><service>.txt`` until :func:`stop_spies`."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [*SPY, "--pid", str(group[0].pid), "-o", str(folder / f"{prefix}{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, group in system.processes().items()
        if name in services
    ]


def stop_spies(spies: list[subprocess.Popen[bytes]]) -> None:
    """Stop them all (SIGINT makes py-spy write its file), then wait for each."""
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        spy.wait(30)


async def measure(system: System, orders: int, rate: float, profile: Path | None) -> dict[str, float]:
    async with client.session(16) as http:
        sellers = await client.sign_up_many(http, system.gateway, "seller", 1)
        buyers = await client.sign_up_many(http, system.gateway, "buyer", 8)
    async with client.session(32) as http:
        tickets = [t["id"] for t in await client.create_tickets(http, system.urls["tickets"], sellers, orders)]
    await system.wait_quiet(180)
    spies = start_spies(system, profile) if profile is not None else []
    if spies:
        await asyncio.sleep(1.0)
    before = system.sample()
    started = time.monotonic()
    created = await scenarios.create_orders_paced(system, buyers, tickets, rate or 1e9, tick=lambda: None)
    driven = time.monotonic() - started
    await system.wait_quiet(180)
    after = system.sample()
    stop_spies(spies)
    per_order = {
        name: (after[name]["cpu_s"] - before[name]["cpu_s"]) * 1000 / max(1, len(created))
        for name in after
        if name in before
    }
    return {"created": len(created), "orders_per_s": len(created) / driven, **per_order}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1250)
    parser.add_argument("--rate", type=float, default=125.0, help="orders/s; 0 = as fast as 64 connections go")
    parser.add_argument("--profile", type=Path, help="a folder for py-spy's raw stacks of each service")
    args = parser.parse_args()
    system = System.start(results_dir=Path(tempfile.mkdtemp(prefix="paced-cpu-")), order_window=900)
    try:
        figures = asyncio.run(measure(system, args.orders, args.rate, args.profile))
    finally:
        system.stop()
    services = ("orders", "tickets", "expiration", "payments", "postgres", "nats")
    figures["total"] = sum(figures.get(name, 0.0) for name in services)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
