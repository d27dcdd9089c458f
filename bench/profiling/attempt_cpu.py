"""CPU per request of the two reads a flash sale repeats, each alone under wrk (64 connections): an order attempt on
a held ticket (400) and the first page of the listing, direct and through the gateway; optionally py-spy stacks.

    uv run python bench/profiling/attempt_cpu.py
    uv run --with py-spy python bench/profiling/attempt_cpu.py --profile /tmp/attempts   # + raw stacks per run

Starts the whole system as the bench does (fresh state) with 1,000 tickets, one of them held by an order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from paced_cpu import start_spies, stop_spies  # this folder's own helpers (the script's folder is on sys.path)

from ticketing_bench import client, wrk
from ticketing_bench.system import System

SECONDS = 6.0


async def seed(system: System) -> tuple[str, str]:
    """A held ticket's id and another buyer's cookie."""
    async with client.session(16) as http:
        sellers = await client.sign_up_many(http, system.gateway, "seller", 4)
        buyers = await client.sign_up_many(http, system.gateway, "buyer", 2)
    async with client.session(32) as http:
        tickets = await client.create_tickets(http, system.urls["tickets"], sellers, 1000)
        held = tickets[0]["id"]
        reply = await client.call(
            http, "POST", system.urls["orders"] + "/api/orders", user=buyers[0], json={"ticketId": held}
        )
        assert reply.status == 201, reply
    await system.wait_quiet(120)
    return held, buyers[1].cookie


def measure(system: System, name: str, base: str, path: str, profile: Path | None, **options: object) -> dict:
    spies = start_spies(system, profile, ("orders", "tickets", "gateway"), prefix=f"{name}.") if profile else []
    before = system.sample()
    result = wrk.run(name, base, path, seconds=SECONDS, **options)  # type: ignore[arg-type]
    after = system.sample()
    stop_spies(spies)
    cpu = {k: round((after[k]["cpu_s"] - before[k]["cpu_s"]) * 1000 / max(1, result.requests), 3) for k in after}
    busy = {k: v for k, v in cpu.items() if v >= 0.005}
    return {
        "run": name,
        "rps": round(result.rps),
        "p99_ms": result.latency_ms["p99"],
        "statuses": result.statuses,
        "cpu_ms_per_request": busy,
        "total": round(sum(busy.values()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    system = System.start(results_dir=Path(tempfile.mkdtemp(prefix="attempt-cpu-")), order_window=900)
    try:
        held, cookie = asyncio.run(seed(system))
        body = json.dumps({"ticketId": held})
        for name, base in (("attempt direct", system.urls["orders"]), ("attempt gateway", system.gateway)):
            print(
                json.dumps(
                    measure(system, name, base, "/api/orders", args.profile, method="POST", body=body, cookie=cookie)
                )
            )
        for name, base in (("listing direct", system.urls["tickets"]), ("listing gateway", system.gateway)):
            print(json.dumps(measure(system, name, base, "/api/tickets?limit=100", args.profile)))
    finally:
        system.stop()


if __name__ == "__main__":
    main()
