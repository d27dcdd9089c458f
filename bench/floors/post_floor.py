"""How far ``POST /api/orders`` can get on this machine at all: ``uv run python bench/floors/post_floor.py``.

Starts an embedded PostgreSQL with the orders tables, then the floor app (``post_floor_app.py``) once per mode,
and measures with wrk, like scenario 2 (64 connections, 2 threads, 8 s): ``/healthz`` (trivial) then
``POST /api/orders`` on tickets never ordered before. Prints req/s, p99 and the ratio the target is about.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import jwt
from floor_servers import floor_servers
from post_floor_app import SECRET

from ticketing_bench import wrk
from ticketing_common.embedded import free_port

HERE = Path(__file__).resolve().parent
TICKETS_PER_MODE = 30_000
SCHEMA = """
CREATE TABLE tickets (id uuid PRIMARY KEY, price numeric(9, 2) NOT NULL, user_id uuid NOT NULL, version int NOT NULL);
CREATE TABLE orders (
    id uuid PRIMARY KEY, user_id uuid NOT NULL, ticket_id uuid NOT NULL REFERENCES tickets (id),
    status text NOT NULL, expires_at timestamptz NOT NULL, version int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX uq_orders_active_ticket ON orders (ticket_id) WHERE status IN ('created', 'complete');
CREATE TABLE outbox (
    id bigserial PRIMARY KEY, subject text NOT NULL, data text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz
);
"""


async def prepare(url: str, ids: list[uuid.UUID]) -> None:
    connection = await asyncpg.connect(url)
    await connection.execute(SCHEMA)
    await connection.copy_records_to_table("tickets", records=[(i, 10, uuid.uuid4(), 0) for i in ids])
    await connection.close()


def measure(url: str, mode: str, ids: list[uuid.UUID]) -> None:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "post_floor_app:app", "--port", str(port), "--log-level", "warning"]
    command += ["--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    server = subprocess.Popen(command, cwd=HERE, env={**os.environ, "FLOOR_DSN": url, "FLOOR_MODE": mode})
    try:
        time.sleep(3)
        base = f"http://127.0.0.1:{port}"
        cookie = "session=" + jwt.encode({"id": str(uuid.uuid4())}, SECRET, algorithm="HS256")
        trivial = wrk.run("trivial", base, "/healthz", seconds=8)
        post = wrk.run(
            "post",
            base,
            "/api/orders",
            method="POST",
            body='{"ticketId": "{id}"}',
            cookie=cookie,
            ids=[str(i) for i in ids],
            pick="next",
            seconds=8,
        )
    finally:
        server.terminate()
        server.wait()
    print(
        f"{mode}: /healthz {trivial.rps:,.0f} req/s; POST /api/orders {post.rps:,.0f} req/s,"
        f" p99 {post.latency_ms['p99']:.1f} ms, answers {post.statuses};"
        f" POST / trivial = {100 * post.rps / trivial.rps:.1f}%"
    )


def main() -> None:
    with floor_servers("post-floor-") as servers:
        ids = [uuid.uuid4() for _ in range(2 * TICKETS_PER_MODE)]
        asyncio.run(prepare(servers.database_url, ids))
        measure(servers.database_url, "tx", ids[:TICKETS_PER_MODE])
        measure(servers.database_url, "cte", ids[TICKETS_PER_MODE:])


if __name__ == "__main__":
    main()
