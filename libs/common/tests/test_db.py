"""The pool every service reaches PostgreSQL through: what a connection carries from one use to the next."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from common_demo import DemoSettings

from ticketing_common.db import WRITE_OUTBOX_ROWS, Database, OutboxMessage, create_database
from ticketing_common.events import TicketCreated

ROOT = Path(__file__).resolve().parents[3]
RUNTIME_CODE = sorted([*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/common/src/ticketing_common/**/*.py")])
# Session state a pool would carry from one use to the next, since it does not reset a connection it takes back.
SESSION_STATE = re.compile(
    r"\bLISTEN\b|\bpg_(try_)?advisory_lock(_shared)?\s*\(|\bSET\s+(SESSION\s+)?[a-z_.]+\s*(=|TO)\b|"
    r"set_config\s*\([^)]*false|\bDECLARE\b.*\bCURSOR\b|\bPREPARE\s+\w+\s*(\(|AS\b)|add_listener\(|CREATE\s+TEMP",
    re.IGNORECASE,
)


@pytest.fixture
async def db(demo_settings: DemoSettings) -> AsyncIterator[Database]:
    database = await create_database(demo_settings.database_dsn, service="demo", size=1)
    try:
        yield database
    finally:
        await database.pool.close()


async def last_statement_of(backend: int, settings: DemoSettings) -> str:
    conn = await asyncpg.connect(settings.database_dsn)
    try:
        return str(await conn.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", backend))
    finally:
        await conn.close()


async def test_a_connection_goes_back_to_the_pool_without_a_reset_round_trip(
    db: Database, demo_settings: DemoSettings
) -> None:
    backend = await db.pool.fetchval("SELECT pg_backend_pid()")

    assert await last_statement_of(backend, demo_settings) == "SELECT pg_backend_pid()"


async def test_a_transaction_left_open_is_rolled_back_before_the_connection_is_used_again(db: Database) -> None:
    async with db.pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TABLE left_open (id int)")

    async with db.pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('left_open')") is None


def a_ticket() -> TicketCreated:
    return TicketCreated(id=uuid.uuid4(), title="Concert", price=Decimal("20.00"), user_id=uuid.uuid4(), version=0)


@pytest.fixture
def handed_over(db: Database) -> list[OutboxMessage]:
    """What the publisher would be handed after each commit."""
    seen: list[OutboxMessage] = []

    def watch(messages: Sequence[OutboxMessage]) -> None:
        seen.extend(messages)

    db.watch_commits(watch)
    return seen


async def test_a_one_statement_unit_of_work_hands_over_the_events_its_statement_wrote(
    db: Database, handed_over: list[OutboxMessage]
) -> None:
    async with db.one_statement() as uow:
        event_id = uow.publish(a_ticket())
        await uow.conn.execute(WRITE_OUTBOX_ROWS, *uow.outbox_arguments())
        assert not uow.conn.is_in_transaction()

    assert [message.event_id for message in handed_over] == [event_id]
    assert await db.pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", event_id) == 1


async def test_a_one_statement_unit_of_work_that_raises_hands_over_nothing(
    db: Database, handed_over: list[OutboxMessage]
) -> None:
    async def refused_after_staging() -> None:
        async with db.one_statement() as uow:
            uow.publish(a_ticket())
            raise LookupError("the statement wrote nothing")

    with pytest.raises(LookupError):
        await refused_after_staging()

    assert handed_over == []


async def test_events_staged_in_one_statement_that_no_statement_wrote_are_refused(
    db: Database, handed_over: list[OutboxMessage]
) -> None:
    with pytest.raises(RuntimeError, match="no statement wrote"):
        async with db.one_statement() as uow:
            uow.publish(a_ticket())

    assert handed_over == []


async def test_a_unit_of_work_writes_at_commit_only_the_events_no_statement_wrote(
    db: Database, handed_over: list[OutboxMessage]
) -> None:
    async with db.unit_of_work() as uow:
        first = uow.publish(a_ticket())
        await uow.conn.execute(WRITE_OUTBOX_ROWS, *uow.outbox_arguments())
        second = uow.publish(a_ticket())

    assert [message.event_id for message in handed_over] == [first, second]
    assert await db.pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = ANY($1)", [first, second]) == 2


@pytest.mark.unit
@pytest.mark.parametrize("path", RUNTIME_CODE, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_runtime_code_keeps_session_state_on_a_pooled_connection(path: Path) -> None:
    found = [line.strip() for line in path.read_text().splitlines() if SESSION_STATE.search(line)]

    assert found == []
