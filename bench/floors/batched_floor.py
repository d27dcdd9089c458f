"""The batched floor: how many full orders/s this machine allows at all, with the real system's event chain but
none of its frameworks: ``uv run python bench/floors/batched_floor.py [--json out.json]`` (``make bench`` runs it).

An embedded PostgreSQL (a database per role) and nats-server, four processes (``batched_floor_node.py``): orders
(bare FastAPI front, the order as one CTE statement, publish after commit; consumes ``ticket.updated``), tickets,
expiration and payments (consume ``order.created``), every consumer batched (up to 256 messages, one statement per
batch). Three phases, each ending only when every consumer has drained:

- ``saturated``: wrk, 64 connections, ``POST /api/orders`` on fresh tickets;
- ``saturated_no_http``: the orders process creates orders itself, 64 loops (the chain without the HTTP front);
- ``paced``: 125 orders/s (500 handled events/s) from an open-loop aiohttp client.

For each: successful orders/s (to the moment everything drained), CPU ms per order over every process
(PostgreSQL with its backends and nats-server included, the load generator excluded), consumer lag
(source commit -> batch commit) p50/p99/max per consumer, and the machine's utilisation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import nats
import psutil
from batched_floor_node import CONSUMES
from floor_servers import floor_servers
from nats.js.api import StreamConfig

from ticketing_bench import wrk
from ticketing_common.embedded import free_port

HERE = Path(__file__).resolve().parent
ROLES = tuple(CONSUMES)
SCHEMA = """
CREATE TABLE inbox (consumer text, event_id text, PRIMARY KEY (consumer, event_id));
CREATE TABLE outbox (
    id bigserial PRIMARY KEY, subject text NOT NULL, data text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz
);
"""
ROLE_SCHEMA = {
    "orders": """
CREATE TABLE tickets (id uuid PRIMARY KEY, price numeric(9, 2) NOT NULL, version int NOT NULL);
CREATE TABLE orders (
    id uuid PRIMARY KEY, user_id uuid NOT NULL, ticket_id uuid NOT NULL REFERENCES tickets (id),
    status text NOT NULL, expires_at timestamptz NOT NULL, version int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX uq_orders_active_ticket ON orders (ticket_id)
    WHERE status IN ('created', 'complete');""",
    "tickets": "CREATE TABLE tickets (id uuid PRIMARY KEY, order_id uuid, version int NOT NULL DEFAULT 0);",
    "expiration": "CREATE TABLE expiries (order_id uuid PRIMARY KEY, expires_at timestamptz NOT NULL);",
    "payments": "CREATE TABLE orders (id uuid PRIMARY KEY, ticket_id uuid NOT NULL);",
}


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def prepare(url: str, nats_url: str, tickets: list[uuid.UUID]) -> dict[str, str]:
    nc = await nats.connect(nats_url)
    await nc.jetstream().add_stream(StreamConfig(name="FLOOR", subjects=["order.>", "ticket.>", "schedule.>"]))
    await nc.close()
    dsns = {}
    admin = await asyncpg.connect(url)
    for role in ROLES:
        await admin.execute(f"CREATE DATABASE floor_{role}")
        dsns[role] = url.rsplit("/", 1)[0] + f"/floor_{role}"
        connection = await asyncpg.connect(dsns[role])
        await connection.execute(SCHEMA + ROLE_SCHEMA[role])
        if role == "orders":
            await connection.copy_records_to_table("tickets", records=[(t, 10, 0) for t in tickets])
        elif role == "tickets":
            await connection.copy_records_to_table("tickets", records=[(t,) for t in tickets], columns=["id"])
        await connection.close()
    await admin.close()
    return dsns


class Floor:
    def __init__(self, nats_url: str, processes: list[psutil.Process], base: str) -> None:
        self.nats_url, self.processes, self.base = nats_url, processes, base

    def cpu(self) -> float:
        """CPU seconds so far of every process, PostgreSQL's backends included."""
        total = 0.0
        for process in self.processes:
            family = [process]
            with contextlib.suppress(psutil.Error):
                family += process.children(recursive=True)
            for member in family:
                with contextlib.suppress(psutil.Error):
                    times = member.cpu_times()
                    total += times.user + times.system
        return total

    async def drained(self, expected: dict[str, int], timeout: float = 120) -> float:
        """Wait until every consumer has handled ``expected`` events in total and nothing is pending."""
        nc = await nats.connect(self.nats_url)
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                done = True
                for info in await js.consumers_info("FLOOR"):
                    role = info.name.split("-", 1)[0]
                    if info.num_pending or info.num_ack_pending:
                        done = False
                    if (info.ack_floor.consumer_seq or 0) < expected.get(role, 0):
                        done = False
                if done:
                    return time.monotonic()
                await asyncio.sleep(0.02)
        finally:
            await nc.close()
        raise TimeoutError("the floor's consumers did not drain")

    async def stats(self) -> dict[str, list[float]]:
        nc = await nats.connect(self.nats_url)
        try:
            found = {}
            for role in ROLES:
                reply = await nc.request(f"floor.stats.{role}", b"", timeout=10)
                found[role] = json.loads(reply.data)["lags"]
            return found
        finally:
            await nc.close()

    async def phase(self, name: str, drive: Any, orders_before: int) -> dict[str, Any]:
        """Run ``drive()`` (returns the successful orders), wait until drained, and measure."""
        await self.stats()  # forget earlier lags
        psutil.cpu_percent()
        cpu_before, started = self.cpu(), time.monotonic()
        driven = await drive()
        orders = driven["orders"]
        total = orders_before + orders
        # one ticket.updated per order for orders; one order.created per order for the others
        ended = await self.drained(dict.fromkeys(ROLES, total))
        cpu = self.cpu() - cpu_before
        utilisation = psutil.cpu_percent()
        lags = await self.stats()
        seconds = ended - started
        result = {
            "orders": orders,
            "seconds_to_drained": seconds,
            "orders_per_s": orders / seconds if seconds else 0.0,
            "cpu_ms_per_order": 1000 * cpu / orders if orders else None,
            "machine_utilisation_pct": utilisation,
            "lag_ms": {
                f"{role} <- {CONSUMES[role]}": {
                    "count": len(values),
                    "p50": 1000 * (quantile(values, 0.5) or 0),
                    "p99": 1000 * (quantile(values, 0.99) or 0),
                    "max": 1000 * max(values, default=0),
                }
                for role, values in lags.items()
            },
            **{k: v for k, v in driven.items() if k != "orders"},
        }
        lag_p99 = max((v["p99"] for v in result["lag_ms"].values()), default=0)
        print(
            f"{name}: {result['orders_per_s']:,.0f} orders/s ({orders} orders, drained at {seconds:.1f} s), "
            f"{result['cpu_ms_per_order'] or 0:.2f} ms CPU/order, worst consumer lag p99 {lag_p99:.1f} ms, "
            f"machine {utilisation:.0f}% busy"
            + (f", HTTP p99 {driven['http_p99_ms']:.1f} ms" if driven.get("http_p99_ms") else ""),
            file=sys.stderr,
        )
        return result


async def measure(
    floor: Floor, tickets: list[uuid.UUID], seconds: float, connections: int, rate: float, paced_seconds: float
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    done = 0
    saturated_ids = [str(t) for t in tickets[: len(tickets) // 2]]
    no_http_count = len(tickets) // 4
    paced_ids = [str(t) for t in tickets[len(tickets) // 2 + no_http_count :]]

    async def saturated() -> dict[str, Any]:
        run = await asyncio.to_thread(
            wrk.run,
            "floor POST",
            floor.base,
            "/api/orders",
            method="POST",
            body='{"ticketId": "{id}"}',
            ids=saturated_ids,
            pick="next",
            connections=connections,
            seconds=seconds,
        )
        return {
            "orders": run.statuses.get("201", 0),
            "http_rps": run.rps,
            "http_p99_ms": run.latency_ms["p99"],
            "wrapped": run.wrapped,
            "statuses": run.statuses,
        }

    results["saturated"] = await floor.phase("saturated (wrk, HTTP front)", saturated, done)
    done += results["saturated"]["orders"]

    async def no_http() -> dict[str, Any]:
        nc = await nats.connect(floor.nats_url)
        try:
            # the orders process takes the lowest ids not yet used: those of the tickets table ordered by id
            await nc.request(
                "floor.drive", json.dumps({"count": no_http_count, "concurrency": connections}).encode(), timeout=300
            )
        finally:
            await nc.close()
        return {"orders": no_http_count}

    if no_http_count:
        results["saturated_no_http"] = await floor.phase("saturated without HTTP", no_http, done)
        done += no_http_count

    count = min(len(paced_ids), int(rate * paced_seconds))

    async def paced() -> dict[str, Any]:
        latencies: list[float] = []
        ok = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            start = time.monotonic() + 0.2

            async def one(i: int) -> None:
                nonlocal ok
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                async with http.post(floor.base + "/api/orders", json={"ticketId": paced_ids[i]}) as response:
                    await response.read()
                    ok += response.status == 201
                latencies.append(time.monotonic() - start - i / rate)

            await asyncio.gather(*(one(i) for i in range(count)))
        return {"orders": ok, "rate": rate, "http_p99_ms": 1000 * (quantile(latencies, 0.99) or 0)}

    results["paced"] = await floor.phase(f"paced at {rate:.0f} orders/s", paced, done)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--seconds", type=float, default=8, help="the saturated run (wrk)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=125, help="the paced run's orders/s")
    parser.add_argument("--paced-seconds", type=float, default=8)
    args = parser.parse_args()
    # Enough fresh tickets that nothing wraps round: half for wrk at up to 2,500 orders/s.
    tickets = sorted(
        uuid.uuid4() for _ in range(int(2 * 2500 * args.seconds) + 2 * int(args.rate * args.paced_seconds))
    )
    with floor_servers("batched-floor-", with_nats=True) as servers:
        dsns = asyncio.run(prepare(servers.database_url, servers.nats_url, tickets))
        port = free_port()
        nodes = [
            subprocess.Popen(
                [sys.executable, str(HERE / "batched_floor_node.py"), role, dsns[role], servers.nats_url, str(port)]
            )
            for role in ROLES
        ]
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90  # slow when the machine is shared
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(base + "/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("the floor's orders process did not start")
                time.sleep(0.2)
            time.sleep(1)  # the consumers' pull requests
            processes = [psutil.Process(p.pid) for p in nodes] + [psutil.Process(p) for p in servers.pids]
            results = asyncio.run(
                measure(
                    Floor(servers.nats_url, processes, base),
                    tickets,
                    args.seconds,
                    args.connections,
                    args.rate,
                    args.paced_seconds,
                )
            )
        finally:
            for node in nodes:
                node.terminate()
            for node in nodes:
                node.wait(10)
    results["meta"] = {
        "seconds": args.seconds,
        "connections": args.connections,
        "rate": args.rate,
        "tickets": len(tickets),
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    else:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
