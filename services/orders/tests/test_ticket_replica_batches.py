"""The ticket copy's listeners apply a batch of events with one statement, with the same outcome as one by one:
creations insert each ticket once, updates apply only on top of the copy's version, and a batch with an update
ahead of its copy raises ``NotYet`` as a whole (rolled back, then replayed one event at a time)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.db import cloudevent_headers
from ticketing_common.events import Event, NotYet, TicketCreated, TicketUpdated
from ticketing_common.events.bus import ensure_stream
from ticketing_common.events.catalogue import encode
from ticketing_common.testing import running, wait_until
from ticketing_orders.config import Settings
from ticketing_orders.listeners import TicketCreatedListener, TicketUpdatedListener
from ticketing_orders.main import create_app

TICKETS = 40
SELLER = uuid.uuid4()


def _created(ticket_id: uuid.UUID, title: str = "v0") -> TicketCreated:
    return TicketCreated(id=ticket_id, title=title, price=Decimal("10"), user_id=SELLER, version=0)


def _updated(ticket_id: uuid.UUID, version: int) -> TicketUpdated:
    return TicketUpdated(
        id=ticket_id, title=f"v{version}", price=Decimal(10 + version), user_id=SELLER, order_id=None, version=version
    )


async def _publish(js: JetStreamContext, event: Event) -> None:
    """As the tickets service's publisher would, while no replica of orders runs: the events wait together."""
    event_id = uuid.uuid4()
    headers = cloudevent_headers(event_id=event_id, subject=event.subject, source="test", time=datetime.now(UTC))
    await js.publish(event.subject, encode(event), headers=headers)


async def _versions(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, int]]:
    rows = await pool.fetch("SELECT id, title, version FROM tickets WHERE id = ANY ($1::uuid[])", ids)
    return {row["id"]: (row["title"], row["version"]) for row in rows}


async def _transactions(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> int:
    """How many transactions last wrote these copies (rows written by one transaction share its xmin)."""
    return int(await pool.fetchval("SELECT count(DISTINCT xmin::text) FROM tickets WHERE id = ANY ($1::uuid[])", ids))


async def _copy_all(app: FastAPI, events: list[TicketCreated]) -> None:
    async with app.state.db.unit_of_work() as uow:
        await TicketCreatedListener().handle_batch(events, uow)


async def test_a_batch_of_creations_inserts_every_ticket_once_and_the_first_creation_of_a_ticket_wins(
    app: FastAPI,
) -> None:
    pool = app.state.db.pool
    existing = uuid.uuid4()
    await _copy_all(app, [_created(existing, "existing")])
    ids = [uuid.uuid4() for _ in range(TICKETS)]
    batch = [_created(i) for i in ids] + [_created(ids[0], "again"), _created(existing, "late")]

    await _copy_all(app, batch)

    copies = await _versions(pool, [*ids, existing])
    assert copies == {existing: ("existing", 0)} | dict.fromkeys(ids, ("v0", 0))
    assert await _transactions(pool, ids) == 1


async def test_a_batch_of_updates_applies_each_next_version_in_one_transaction_and_ignores_the_ones_behind(
    app: FastAPI,
) -> None:
    pool = app.state.db.pool
    ids = [uuid.uuid4() for _ in range(TICKETS)]
    await _copy_all(app, [_created(i) for i in ids])
    earlier = [_updated(i, 1) for i in ids[:5]]
    async with app.state.db.unit_of_work() as uow:  # five copies already at v1
        await TicketUpdatedListener().handle_batch(earlier, uow)

    batch = [_updated(i, 1) for i in ids] + [_updated(ids[-1], 1)]  # v1 again for the five: behind; one twice
    async with app.state.db.unit_of_work() as uow:
        await TicketUpdatedListener().handle_batch(batch, uow)

    assert await _versions(pool, ids) == dict.fromkeys(ids, ("v1", 1))
    assert await _transactions(pool, ids[5:]) == 1
    assert await _transactions(pool, ids[:5]) == 1  # untouched by the second batch: still the first one's


@pytest.mark.parametrize("ahead", ["version 2 of a copy at 0", "a copy that does not exist yet"])
async def test_a_batch_with_an_update_ahead_of_its_copy_raises_not_yet_and_changes_nothing(
    app: FastAPI, ahead: str
) -> None:
    pool = app.state.db.pool
    ids = [uuid.uuid4() for _ in range(10)]
    await _copy_all(app, [_created(i) for i in ids])
    late = _updated(ids[3], 2) if ahead.startswith("version") else _updated(uuid.uuid4(), 1)
    batch = [_updated(i, 1) for i in ids] + [late]

    with pytest.raises(NotYet):
        async with app.state.db.unit_of_work() as uow:
            await TicketUpdatedListener().handle_batch(batch, uow)

    assert await _versions(pool, ids) == dict.fromkeys(ids, ("v0", 0))


async def test_one_update_uses_the_same_statement_and_answers_applied_behind_or_not_yet(app: FastAPI) -> None:
    pool = app.state.db.pool
    ticket_id = uuid.uuid4()
    await _copy_all(app, [_created(ticket_id)])
    listener = TicketUpdatedListener()

    async def handle(event: TicketUpdated) -> None:
        async with app.state.db.unit_of_work() as uow:
            await listener.handle(event, uow)

    with pytest.raises(NotYet):
        await handle(_updated(ticket_id, 2))
    await handle(_updated(ticket_id, 1))
    await handle(_updated(ticket_id, 1))  # behind: no effect, no error
    await handle(_updated(ticket_id, 2))

    assert await _versions(pool, [ticket_id]) == {ticket_id: ("v2", 2)}


@dataclass(frozen=True)
class Run:
    transactions: int  # how many transactions last wrote the copies
    handled: Callable[[str], float]  # ticket.updated events settled with an outcome


async def _run_until_copied(settings: Settings, expected: dict[uuid.UUID, tuple[str, int]]) -> Run:
    """Run the service over the events already waiting until the copies are as expected."""
    app = create_app(settings.model_copy(update={"event_concurrency": 1}))
    async with running(app):
        pool = app.state.db.pool

        async def reached() -> bool:
            return await _versions(pool, list(expected)) == expected

        await wait_until(reached, timeout=30)
        transactions = await _transactions(pool, list(expected))
    metrics = app.state.metrics
    return Run(transactions, lambda outcome: metrics.events_handled.labels("ticket.updated", outcome)._value.get())


async def test_events_that_waited_together_are_applied_in_a_few_transactions(
    settings: Settings, js: JetStreamContext
) -> None:
    await ensure_stream(js, settings.nats_stream)
    ids = [uuid.uuid4() for _ in range(TICKETS)]
    for ticket_id in ids:
        await _publish(js, _created(ticket_id))
    creations = await _run_until_copied(settings, dict.fromkeys(ids, ("v0", 0)))
    for ticket_id in ids:
        await _publish(js, _updated(ticket_id, 1))

    updates = await _run_until_copied(settings, dict.fromkeys(ids, ("v1", 1)))

    assert creations.transactions < TICKETS / 5
    assert updates.transactions < TICKETS / 5
    assert (updates.handled("ok"), updates.handled("not_yet")) == (TICKETS, 0)


async def test_a_batch_holding_versions_out_of_order_is_replayed_one_by_one_to_the_last_version(
    settings: Settings, js: JetStreamContext
) -> None:
    await ensure_stream(js, settings.nats_stream)
    ids = [uuid.uuid4() for _ in range(10)]
    for ticket_id in ids:
        await _publish(js, _created(ticket_id))
    await _run_until_copied(settings, dict.fromkeys(ids, ("v0", 0)))
    for ticket_id in ids:
        await _publish(js, _updated(ticket_id, 1))
    await _publish(js, _updated(ids[0], 3))  # ahead of everything: waits for v2
    await _publish(js, _updated(ids[0], 2))
    await _publish(js, _updated(ids[1], 1))  # republished under a new event id: behind once applied

    run = await _run_until_copied(settings, {ids[0]: ("v3", 3)} | dict.fromkeys(ids[1:], ("v1", 1)))

    assert run.handled("not_yet") >= 1
    assert run.handled("parked") == 0
