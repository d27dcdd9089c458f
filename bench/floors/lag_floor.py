"""How low event lag can go on this machine at all: ``uv run python bench/floors/lag_floor.py``.

The shape of scenario 3 without the services' frameworks: an embedded PostgreSQL (a database per role) and
nats-server, four processes (``lag_floor_node.py``) doing each role's transactions with raw asyncpg and nats-py,
1,250 orders at 125/s (= 500 handled events/s). Prints each consumer's lag (source commit -> its commit) and
each process's CPU per order, startup included.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import nats
from floor_servers import floor_servers
from nats.js.api import StreamConfig

HERE = Path(__file__).resolve().parent
ROLES = ("orders", "tickets", "expiration", "payments")
COUNT = int(os.environ.get("COUNT", "1250"))
SCHEMA = """
CREATE TABLE inbox (consumer text, event_id text, PRIMARY KEY (consumer, event_id));
CREATE TABLE outbox (
    id bigserial PRIMARY KEY, subject text, data text, created_at timestamptz DEFAULT now(), sent_at timestamptz
);
CREATE TABLE tickets (id uuid PRIMARY KEY, order_id uuid, version int NOT NULL DEFAULT 0);
CREATE TABLE orders (id uuid PRIMARY KEY, ticket_id uuid);
CREATE TABLE expiries (order_id uuid PRIMARY KEY, expires_at timestamptz);
"""


async def prepare(url: str, nats_url: str) -> dict[str, str]:
    nc = await nats.connect(nats_url)
    await nc.jetstream().add_stream(StreamConfig(name="FLOOR", subjects=["order.>", "ticket.>", "schedule.>"]))
    await nc.close()
    dsns = {}
    admin = await asyncpg.connect(url)
    ticket_ids = [(uuid.uuid4(),) for _ in range(COUNT)]
    for role in ROLES:
        await admin.execute(f"CREATE DATABASE floor_{role}")
        dsns[role] = url.rsplit("/", 1)[0] + f"/floor_{role}"
        connection = await asyncpg.connect(dsns[role])
        await connection.execute(SCHEMA)
        if role in ("orders", "tickets"):
            await connection.copy_records_to_table("tickets", records=ticket_ids, columns=["id"])
        await connection.close()
    await admin.close()
    return dsns


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    with floor_servers("lag-floor-", with_nats=True) as servers:
        root = servers.root
        dsns = asyncio.run(prepare(servers.database_url, servers.nats_url))
        processes = []
        for role in reversed(ROLES):  # consumers first; the source starts last
            out = str(root / f"{role}.json")
            node = [sys.executable, str(HERE / "lag_floor_node.py"), role, dsns[role], servers.nats_url, out]
            processes.append(subprocess.Popen(node))
            time.sleep(1.5)
        for process in processes:
            process.wait()
        for role in ROLES:
            result = json.loads((root / f"{role}.json").read_text())
            lags = [1000 * lag for lag in result["lags"]]
            print(
                f"{role:10s} lag p50 {quantile(lags, 0.5):5.2f} ms  p99 {quantile(lags, 0.99):5.2f} ms"
                f"  max {max(lags):5.2f} ms  ({len(lags)} events)  CPU {result['cpu_ms_per_order']:.2f} ms/order"
            )


if __name__ == "__main__":
    main()
