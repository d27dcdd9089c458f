"""What one event-handler transaction costs the client, by how its statements are issued:
``uv run python bench/floors/statement_cost.py``.

The transaction of the tickets service's ``order.created`` handler (claim the event in the inbox, lock the
ticket, update it, write the outbox row), run 3,000 times one after the other on an embedded PostgreSQL, through
raw asyncpg, SQLAlchemy with statements built per call (session and connection), SQLAlchemy with statements built
once (bind parameters), and the ORM (load, change, add). Prints the client's CPU per transaction (the server's
is not counted).
"""

from __future__ import annotations

import json
import resource
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import uvloop
from floor_servers import floor_servers
from sqlalchemy import BigInteger, Integer, Text, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

N = 3000
PAYLOAD = {"id": str(uuid.uuid4()), "version": 1, "price": "10.00", "title": "t", "userId": str(uuid.uuid4())}


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    version: Mapped[int] = mapped_column(Integer)


class Outbox(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)


class Inbox(Base):
    __tablename__ = "inbox"
    consumer: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)


inbox, tickets, outbox = Inbox.__table__, Ticket.__table__, Outbox.__table__
CLAIM = (
    pg_insert(inbox)
    .values(consumer=bindparam("consumer"), event_id=bindparam("event_id"))
    .on_conflict_do_nothing()
    .returning(inbox.c.event_id)
)
LOCK = select(tickets).where(tickets.c.id == bindparam("ticket_id")).with_for_update()
HOLD = (
    update(tickets)
    .where(tickets.c.id == bindparam("ticket_id"))
    .values(order_id=bindparam("new_order_id"), version=tickets.c.version + 1)
)
WRITE_OUTBOX = insert(outbox).values(subject=bindparam("subject"), payload=bindparam("payload"))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed(label: str, ticket_ids: list[uuid.UUID], one: Callable[[uuid.UUID], Awaitable[None]]) -> None:
    started = cpu_seconds()
    for ticket_id in ticket_ids:
        await one(ticket_id)
    print(f"{label:48s} {1000 * (cpu_seconds() - started) / len(ticket_ids):.3f} ms per transaction")


async def run(url: str) -> None:
    engine: AsyncEngine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"), pool_size=2)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    ids = [uuid.uuid4() for _ in range(5 * N)]
    raw = await asyncpg.connect(url)
    await raw.copy_records_to_table(
        "tickets", records=[(i, None, 0) for i in ids], columns=["id", "order_id", "version"]
    )
    batches = [ids[i * N : (i + 1) * N] for i in range(5)]
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def with_raw(ticket_id: uuid.UUID) -> None:
        async with raw.transaction():
            await raw.fetchval(
                "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING event_id",
                "c",
                str(uuid.uuid4()),
            )
            await raw.fetchrow("SELECT id, order_id, version FROM tickets WHERE id = $1 FOR UPDATE", ticket_id)
            await raw.execute(
                "UPDATE tickets SET order_id = $1, version = version + 1 WHERE id = $2", uuid.uuid4(), ticket_id
            )
            await raw.execute(
                "INSERT INTO outbox (subject, payload) VALUES ($1, $2)", "ticket.updated", json.dumps(PAYLOAD)
            )

    async def built_per_call_session(ticket_id: uuid.UUID) -> None:
        async with sessions() as session, session.begin():
            await session.scalar(
                pg_insert(inbox)
                .values(consumer="c", event_id=str(uuid.uuid4()))
                .on_conflict_do_nothing()
                .returning(inbox.c.event_id)
            )
            await session.execute(select(tickets).where(tickets.c.id == ticket_id).with_for_update())
            await session.execute(
                update(tickets)
                .where(tickets.c.id == ticket_id)
                .values(order_id=uuid.uuid4(), version=tickets.c.version + 1)
            )
            await session.execute(insert(outbox).values(subject="ticket.updated", payload=PAYLOAD))

    async def built_once_session(ticket_id: uuid.UUID) -> None:
        async with sessions() as session, session.begin():
            await session.scalar(CLAIM, {"consumer": "c", "event_id": str(uuid.uuid4())})
            await session.execute(LOCK, {"ticket_id": ticket_id})
            await session.execute(HOLD, {"ticket_id": ticket_id, "new_order_id": uuid.uuid4()})
            await session.execute(WRITE_OUTBOX, {"subject": "ticket.updated", "payload": PAYLOAD})

    async def built_once_connection(ticket_id: uuid.UUID) -> None:
        async with engine.begin() as connection:
            await connection.scalar(CLAIM, {"consumer": "c", "event_id": str(uuid.uuid4())})
            await connection.execute(LOCK, {"ticket_id": ticket_id})
            await connection.execute(HOLD, {"ticket_id": ticket_id, "new_order_id": uuid.uuid4()})
            await connection.execute(WRITE_OUTBOX, {"subject": "ticket.updated", "payload": PAYLOAD})

    async def orm(ticket_id: uuid.UUID) -> None:
        async with sessions() as session, session.begin():
            await session.scalar(CLAIM, {"consumer": "c", "event_id": str(uuid.uuid4())})
            ticket = await session.get(Ticket, ticket_id, with_for_update=True)
            assert ticket is not None
            ticket.order_id = uuid.uuid4()
            ticket.version += 1
            session.add(Outbox(subject="ticket.updated", payload=PAYLOAD))

    await timed("raw asyncpg", batches[0], with_raw)
    await timed("SQLAlchemy, statements built per call (session)", batches[1], built_per_call_session)
    await timed("SQLAlchemy, statements built once (session)", batches[2], built_once_session)
    await timed("SQLAlchemy, statements built once (connection)", batches[3], built_once_connection)
    await timed("SQLAlchemy ORM (load, change, add)", batches[4], orm)
    await raw.close()
    await engine.dispose()


def main() -> None:
    with floor_servers("statement-cost-") as servers:
        uvloop.run(run(servers.database_url))


if __name__ == "__main__":
    main()
