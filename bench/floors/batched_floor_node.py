"""One process of the batched floor (started by ``batched_floor.py``): raw asyncpg + nats-py, batched.

- every consumer keeps pull requests open for up to 256 messages (``MSG.NEXT`` on its own inbox) and takes what
  has arrived: one statement of common table expressions per batch claims the inbox rows, writes and inserts the
  outbox rows; then one ack (``AckPolicy.ALL``) for the batch and ``publish_async`` with ``Nats-Msg-Id`` of the
  outbox rows; a task marks published rows sent every 50 ms;
- ``orders`` also serves ``POST /api/orders`` (bare FastAPI on uvicorn, the order as one CTE statement) and
  consumes ``ticket.updated``; ``tickets`` reserves the ticket and emits ``ticket.updated``; ``expiration`` stores
  the expiry and emits its schedule message; ``payments`` stores its copy of the order. 4 handled events per order,
  like the real system.

Answers ``floor.stats.<role>`` requests with the lags (source commit -> batch commit) recorded since the last one.
``floor.drive`` (orders only) creates orders in-process, without HTTP: ``{"count", "concurrency"}``.
"""

# ruff: noqa: S608  (the statements are constants put together from constants)
from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats
import uvicorn
import uvloop
from fastapi import FastAPI
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from pydantic import BaseModel

STREAM = "FLOOR"
BATCH = 256
EXPIRES_NS = 2_000_000_000

# Per role: the subject consumed and the one statement handling a batch ($1 consumer, $2 event ids, $3/$4 data);
# it returns the outbox rows to publish (id, subject, data).
CONSUMES = {
    "orders": "ticket.updated",
    "tickets": "order.created",
    "expiration": "order.created",
    "payments": "order.created",
}
_CLAIM = """WITH ev AS (SELECT * FROM unnest($2::text[], $3::uuid[], $4::uuid[]) AS e (event_id, a, b)),
claimed AS (INSERT INTO inbox (consumer, event_id) SELECT $1, event_id FROM ev ON CONFLICT DO NOTHING
            RETURNING event_id),
fresh AS (SELECT ev.* FROM ev JOIN claimed USING (event_id))"""
STATEMENTS = {
    # a = ticket id, b unused: the version copied like the real listener's optimistic update
    "orders": _CLAIM
    + """, w AS (UPDATE tickets t SET version = t.version + 1 FROM fresh WHERE t.id = fresh.a RETURNING 1)
        SELECT NULL::bigint AS id, NULL AS subject, NULL AS data FROM w WHERE false""",
    # a = order id, b = ticket id
    "tickets": _CLAIM
    + """, w AS (UPDATE tickets t SET order_id = fresh.a, version = t.version + 1 FROM fresh
                  WHERE t.id = fresh.b RETURNING t.id, t.version),
        x AS (INSERT INTO outbox (subject, data)
              SELECT 'ticket.updated', json_build_object('id', id, 'version', version)::text FROM w
              RETURNING id, subject, data)
        SELECT * FROM x""",
    "expiration": _CLAIM
    + """, w AS (INSERT INTO expiries (order_id, expires_at)
                  SELECT a, now() + interval '1 hour' FROM fresh RETURNING order_id),
        x AS (INSERT INTO outbox (subject, data)
              SELECT 'schedule.expiry.' || order_id, json_build_object('orderId', order_id)::text FROM w
              RETURNING id, subject, data)
        SELECT * FROM x""",
    "payments": _CLAIM
    + """, w AS (INSERT INTO orders (id, ticket_id) SELECT a, b FROM fresh RETURNING 1)
        SELECT NULL::bigint AS id, NULL AS subject, NULL AS data FROM w WHERE false""",
}
ORDER_CTE = """WITH t AS (SELECT id, price, version FROM tickets WHERE id = $1),
     o AS (INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version)
           SELECT $2, $3, t.id, 'created', $4, 0 FROM t RETURNING id),
     x AS (INSERT INTO outbox (subject, data)
           SELECT 'order.created', json_build_object('id', $2::uuid, 'ticket', json_build_object('id', t.id))::text
           FROM o, t RETURNING id, data)
SELECT x.id, x.data, t.price FROM t, x"""


class Node:
    def __init__(self, role: str, pool: asyncpg.Pool, nc: Client, js: JetStreamContext) -> None:
        self.role, self.pool, self.nc, self.js = role, pool, nc, js
        self.lags: list[float] = []
        self.handled = 0
        self.published: list[int] = []  # outbox ids acknowledged by JetStream, to mark sent

    async def publish(self, rows: list[tuple[int, str, str]]) -> None:
        """After the commit: publish each outbox row, then queue its id to be marked sent."""
        committed = repr(time.time())
        futures = [
            await self.js.publish_async(
                subject, data.encode(), headers={"Nats-Msg-Id": f"{self.role}-{row_id}", "committed": committed}
            )
            for row_id, subject, data in rows
        ]
        ids = [row[0] for row in rows]

        async def confirmed() -> None:
            await asyncio.gather(*futures)
            self.published += ids

        asyncio.get_running_loop().create_task(confirmed())

    async def mark_sent(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            if self.published:
                ids, self.published = self.published, []
                await self.pool.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", ids)

    async def consume(self) -> None:
        subject = CONSUMES[self.role]
        durable = f"{self.role}-{subject.replace('.', '-')}"
        await self.js.add_consumer(
            STREAM,
            ConsumerConfig(
                durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.ALL, max_ack_pending=20_000
            ),
        )
        arrived: list[Msg] = []
        ready = asyncio.Event()
        open_requests: deque[int] = deque()  # messages each open pull request may still deliver, oldest first
        inbox = self.nc.new_inbox()
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{durable}"
        request = json.dumps({"batch": BATCH, "expires": EXPIRES_NS}).encode()

        async def top_up() -> None:
            while sum(open_requests) < BATCH // 2:
                open_requests.append(BATCH)
                await self.nc.publish(next_subject, request, reply=inbox)

        async def on_message(msg: Msg) -> None:
            if msg.headers and "Status" in msg.headers:  # 408 expired, 409 ...: the oldest request is over
                if open_requests:
                    open_requests.popleft()
            else:
                arrived.append(msg)
                ready.set()
                if open_requests:
                    open_requests[0] -= 1
                    if open_requests[0] <= 0:
                        open_requests.popleft()
            await top_up()

        await self.nc.subscribe(inbox, cb=on_message)
        await top_up()
        statement = STATEMENTS[self.role]
        while True:
            await ready.wait()
            ready.clear()
            while arrived:
                batch, arrived[:] = arrived[:BATCH], arrived[BATCH:]
                ids, first, second, committed = [], [], [], []
                for msg in batch:
                    headers = msg.headers or {}
                    event = json.loads(msg.data)
                    ids.append(headers["Nats-Msg-Id"])
                    committed.append(float(headers["committed"]))
                    if self.role == "orders":
                        first.append(event["id"])
                        second.append(event["id"])
                    else:
                        first.append(event["id"])
                        second.append(event["ticket"]["id"])
                rows = await self.pool.fetch(statement, durable, ids, first, second)
                now = time.time()
                self.lags += [now - c for c in committed]
                self.handled += len(batch)
                await batch[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch
                if rows:
                    await self.publish([(r["id"], r["subject"], r["data"]) for r in rows])

    async def create_order(self, ticket_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any] | None:
        order_id = uuid.uuid4()
        expires_at = datetime.now(UTC) + timedelta(minutes=15)
        row = await self.pool.fetchrow(ORDER_CTE, ticket_id, order_id, user_id, expires_at)
        if row is None:
            return None
        await self.publish([(row["id"], "order.created", row["data"])])
        return {"id": str(order_id), "status": "created", "expiresAt": expires_at.isoformat(), "price": str(row[2])}

    async def stats(self, msg: Msg) -> None:
        lags, self.lags = self.lags, []
        await msg.respond(json.dumps({"handled": self.handled, "lags": lags}).encode())

    async def drive(self, msg: Msg) -> None:
        """Orders without HTTP: ``count`` fresh tickets ordered by ``concurrency`` loops."""
        ask = json.loads(msg.data)
        ids = [
            r["id"]
            for r in await self.pool.fetch(
                "SELECT id FROM tickets t WHERE NOT EXISTS (SELECT FROM orders o WHERE o.ticket_id = t.id)"
                " ORDER BY id LIMIT $1",
                ask["count"],
            )
        ]
        user = uuid.uuid4()

        async def loop(start: int) -> None:
            for ticket in ids[start :: ask["concurrency"]]:
                await self.create_order(ticket, user)

        await asyncio.gather(*(loop(i) for i in range(ask["concurrency"])))
        await msg.respond(b"{}")


class NewOrder(BaseModel):
    ticketId: uuid.UUID


def front(node: Node) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(lifespan=lifespan)
    user = uuid.uuid4()  # the session check is the POST floor's business (post_floor.py), not this one's

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/orders", status_code=201)
    async def create(body: NewOrder) -> dict[str, Any]:
        return await node.create_order(body.ticketId, user) or {}

    return app


async def run(role: str, dsn: str, nats_url: str, port: int) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream(publish_async_max_pending=20_000)
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    node = Node(role, pool, nc, js)
    await nc.subscribe(f"floor.stats.{role}", cb=node.stats)
    tasks = [asyncio.create_task(node.consume()), asyncio.create_task(node.mark_sent())]
    if role == "orders":

        async def drive(msg: Msg) -> None:
            asyncio.get_running_loop().create_task(node.drive(msg))

        await nc.subscribe("floor.drive", cb=drive)
        config = uvicorn.Config(front(node), port=port, log_level="warning", access_log=False, http="httptools")
        await uvicorn.Server(config).serve()  # until SIGTERM
    else:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(15, stop.set)
        await nc.publish(f"floor.ready.{role}", b"")
        await stop.wait()
    for task in tasks:
        task.cancel()
    await nc.close()
    await pool.close()


def main() -> None:
    role, dsn, nats_url, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    uvloop.run(run(role, dsn, nats_url, port))


if __name__ == "__main__":
    main()
