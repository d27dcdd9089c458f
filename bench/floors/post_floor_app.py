"""The floor of ``POST /api/orders``: FastAPI + raw asyncpg, no ORM, no outbox relay, no listeners.

The same work as the real use case: verify the session JWT, validate the body, one transaction that reads the
ticket, inserts the order and inserts its outbox row (``FLOOR_MODE=tx``), or the same in one statement of
common table expressions (``FLOOR_MODE=cte``). Served by uvicorn (uvloop, httptools) in one process, like a
service. Started by ``post_floor.py``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
from fastapi import FastAPI, Request
from pydantic import BaseModel

SECRET = "floor-" * 8
DSN = os.environ.get("FLOOR_DSN", "")
MODE = os.environ.get("FLOOR_MODE", "tx")


class NewOrder(BaseModel):
    ticketId: uuid.UUID  # the wire name, as the real service spells it


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(DSN, min_size=10, max_size=10)
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/orders", status_code=201)
async def create_order(body: NewOrder, request: Request) -> dict[str, Any]:
    claims = jwt.decode(request.cookies.get("session", ""), SECRET, algorithms=["HS256"])
    user_id = uuid.UUID(claims["id"])
    expires_at = datetime.now(UTC) + timedelta(minutes=15)
    order_id = uuid.uuid4()
    payload = json.dumps({"id": str(order_id), "ticket": {"id": str(body.ticketId)}})
    async with app.state.pool.acquire() as connection:
        if MODE == "cte":
            price = await connection.fetchval(
                """WITH t AS (SELECT id, price FROM tickets WHERE id = $1),
                        o AS (INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version)
                              SELECT $2, $3, t.id, 'created', $4, 0 FROM t RETURNING id),
                        x AS (INSERT INTO outbox (subject, data) SELECT 'order.created', $5 FROM o RETURNING id)
                   SELECT t.price FROM t, x""",
                body.ticketId,
                order_id,
                user_id,
                expires_at,
                payload,
            )
        else:
            async with connection.transaction():
                price = await connection.fetchval("SELECT price FROM tickets WHERE id = $1", body.ticketId)
                await connection.execute(
                    "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version)"
                    " VALUES ($1, $2, $3, 'created', $4, 0)",
                    order_id,
                    user_id,
                    body.ticketId,
                    expires_at,
                )
                await connection.execute("INSERT INTO outbox (subject, data) VALUES ('order.created', $1)", payload)
    return {
        "id": str(order_id),
        "status": "created",
        "userId": str(user_id),
        "expiresAt": expires_at.isoformat(),
        "version": 0,
        "ticket": {"id": str(body.ticketId), "price": str(price)},
    }
