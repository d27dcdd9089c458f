"""One process of the event-lag floor (started by ``lag_floor.py``): raw asyncpg + nats-py, no SQLAlchemy, no
FastAPI, no logging or metrics.

- ``orders``: at ``RATE``/s, one transaction (read the ticket, insert the order and its outbox row), then
  publish ``order.created`` with the commit time in a header and mark the row sent; consumes ``ticket.updated``.
- ``tickets`` / ``expiration`` / ``payments``: consume ``order.created``, each in a transaction with its inbox
  row, like the services (tickets also writes ``ticket.updated`` to its outbox and publishes it after the commit;
  expiration publishes a message after it).

Each consumer records, per event, its own commit time minus the source's commit time, and writes the list to
``OUT`` as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import nats
import uvloop
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

STREAM = "FLOOR"
Apply = Callable[[asyncpg.Connection, dict[str, Any]], Awaitable[Callable[[], Awaitable[Any]] | None]]


async def publish_committed(
    js: JetStreamContext, pool: asyncpg.Pool, outbox_id: int, subject: str, data: bytes
) -> None:
    committed = time.time()
    await js.publish(subject, data, headers={"id": str(uuid.uuid4()), "committed": repr(committed)})
    await pool.execute("UPDATE outbox SET sent_at = now() WHERE id = $1", outbox_id)


async def consume(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    subject: str,
    durable: str,
    apply: Apply,
    lags: list[float],
    done: asyncio.Event,
    count: int,
) -> None:
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1000)
    subscription = await js.pull_subscribe(subject, durable=durable, stream=STREAM, config=config)
    while True:
        try:
            messages = await subscription.fetch(1, timeout=5)
        except TimeoutError:
            continue
        for message in messages:
            headers = message.headers or {}
            after = None
            async with pool.acquire() as connection, connection.transaction():
                claimed = await connection.fetchval(
                    "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING event_id",
                    durable,
                    headers["id"],
                )
                if claimed:
                    after = await apply(connection, json.loads(message.data))
            lags.append(time.time() - float(headers["committed"]))
            if len(lags) >= count:
                done.set()
            await message.ack()
            if after is not None:
                await after()


async def run(role: str, dsn: str, nats_url: str, rate: float, count: int) -> list[float]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=10)
    lags: list[float] = []
    done = asyncio.Event()

    async def copy_ticket(connection: asyncpg.Connection, event: dict[str, Any]) -> None:
        await connection.execute("UPDATE tickets SET version = version + 1 WHERE id = $1", uuid.UUID(event["id"]))
        return None

    async def on_order_created(connection: asyncpg.Connection, event: dict[str, Any]) -> Any:
        order_id, ticket_id = uuid.UUID(event["id"]), uuid.UUID(event["ticket"]["id"])
        if role == "tickets":
            await connection.execute(
                "UPDATE tickets SET order_id = $1, version = version + 1 WHERE id = $2", order_id, ticket_id
            )
            data = json.dumps({"id": str(ticket_id)}).encode()
            outbox_id = await connection.fetchval(
                "INSERT INTO outbox (subject, data) VALUES ('ticket.updated', $1) RETURNING id", data.decode()
            )
            return lambda: publish_committed(js, pool, outbox_id, "ticket.updated", data)
        if role == "expiration":
            await connection.execute(
                "INSERT INTO expiries (order_id, expires_at) VALUES ($1, now() + interval '1 hour')", order_id
            )
            return lambda: js.publish("schedule.expiry", b"{}")
        await connection.execute("INSERT INTO orders (id, ticket_id) VALUES ($1, $2)", order_id, ticket_id)
        return None

    if role == "orders":
        listener = asyncio.create_task(
            consume(js, pool, "ticket.updated", "orders-ticket", copy_ticket, lags, done, count)
        )
        ticket_ids = [row["id"] for row in await pool.fetch("SELECT id FROM tickets ORDER BY id LIMIT $1", count)]
        start = time.monotonic() + 1

        async def create_order(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            ticket_id, order_id = ticket_ids[i], uuid.uuid4()
            data = json.dumps({"id": str(order_id), "ticket": {"id": str(ticket_id)}}).encode()
            async with pool.acquire() as connection, connection.transaction():
                await connection.fetchrow("SELECT id, version FROM tickets WHERE id = $1", ticket_id)
                await connection.execute("INSERT INTO orders (id, ticket_id) VALUES ($1, $2)", order_id, ticket_id)
                outbox_id = await connection.fetchval(
                    "INSERT INTO outbox (subject, data) VALUES ('order.created', $1) RETURNING id", data.decode()
                )
            await publish_committed(js, pool, outbox_id, "order.created", data)

        await asyncio.gather(*(create_order(i) for i in range(count)))
    else:
        listener = asyncio.create_task(
            consume(js, pool, "order.created", f"{role}-order", on_order_created, lags, done, count)
        )
    await done.wait()
    listener.cancel()
    await pool.close()
    await nc.close()
    return lags


def main() -> None:
    role, dsn, nats_url, out = sys.argv[1:5]
    rate, count = float(os.environ.get("RATE", "125")), int(os.environ.get("COUNT", "1250"))
    lags = uvloop.run(run(role, dsn, nats_url, rate, count))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_ms = 1000 * (usage.ru_utime + usage.ru_stime) / count
    with open(out, "w") as file:
        json.dump({"lags": lags, "cpu_ms_per_order": cpu_ms}, file)


if __name__ == "__main__":
    main()
