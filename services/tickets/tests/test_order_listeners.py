"""order.created holds a ticket and order.cancelled releases it, applied through real NATS: once per change,
whatever the redeliveries, duplicates and reorderings."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
from fastapi import FastAPI

from ticketing_common.testing import running, signin, wait_until
from ticketing_tickets.main import create_app


def _handled(app: FastAPI, subject: str, outcome: str) -> float:
    value: float = app.state.metrics.events_handled.labels(subject, outcome)._value.get()
    return value


async def _count(app: FastAPI, subject: str, outcome: str, at_least: float = 1) -> bool:
    return _handled(app, subject, outcome) >= at_least


async def _state(stored, ticket_id: str) -> tuple[uuid.UUID | None, int]:
    ticket = await stored(ticket_id)
    assert ticket is not None
    return ticket.order_id, ticket.version


async def test_order_created_holds_the_ticket_and_publishes_ticket_updated_once(
    client: httpx.AsyncClient, make_ticket, orders, stored, published
) -> None:
    user = signin(client)
    ticket = await make_ticket("Concert", 19.99)
    order_id, _ = await orders.created(ticket["id"])

    async def held() -> bool:
        return await _state(stored, ticket["id"]) == (order_id, 1)

    await wait_until(held)
    [event] = await published("ticket.updated")
    assert event.data == {
        "id": ticket["id"],
        "title": "Concert",
        "price": 19.99,
        "userId": str(user.id),
        "orderId": str(order_id),
        "version": 1,
        "eventId": None,
    }
    listed = (await client.get("/api/tickets")).json()["tickets"]
    assert listed == []


async def test_order_cancelled_releases_the_ticket_and_publishes_ticket_updated_once(
    client: httpx.AsyncClient, make_ticket, orders, stored, published
) -> None:
    signin(client)
    ticket = await make_ticket()
    order_id, _ = await orders.created(ticket["id"])
    await wait_until(lambda: _is(stored, ticket["id"], (order_id, 1)))
    await orders.cancelled(ticket["id"], order_id)
    await wait_until(lambda: _is(stored, ticket["id"], (None, 2)))

    events = await published("ticket.updated")
    assert [(e.data["orderId"], e.data["version"]) for e in events] == [(str(order_id), 1), (None, 2)]
    listed = (await client.get("/api/tickets")).json()["tickets"]
    assert [t["id"] for t in listed] == [ticket["id"]]
    assert listed[0]["version"] == 2


async def test_a_redelivered_order_created_is_applied_once(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published
) -> None:
    signin(client)
    ticket = await make_ticket()
    order_id, event_id = await orders.created(ticket["id"])
    # The same event again, past JetStream's duplicate window: stored and delivered a second time.
    await orders.created(ticket["id"], order_id, event_id=event_id, dedup_id=str(uuid.uuid4()))

    # Two workers may take the copies apart; the one that claimed the event may count it after the other's
    # duplicate: wait for both outcomes, then each is exactly one.
    await wait_until(lambda: _count(app, "order.created", "duplicate"))
    await wait_until(lambda: _count(app, "order.created", "ok"))
    assert (_handled(app, "order.created", "ok"), _handled(app, "order.created", "duplicate")) == (1, 1)
    assert await _state(stored, ticket["id"]) == (order_id, 1)
    assert [e.data["version"] for e in await published("ticket.updated")] == [1]


async def test_an_order_created_republished_under_a_new_event_id_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published
) -> None:
    signin(client)
    ticket = await make_ticket()
    order_id, _ = await orders.created(ticket["id"])
    await wait_until(lambda: _is(stored, ticket["id"], (order_id, 1)))
    await orders.created(ticket["id"], order_id)  # e.g. the orders outbox replayed after a restore

    await wait_until(lambda: _count(app, "order.created", "ok", at_least=2))
    assert await _state(stored, ticket["id"]) == (order_id, 1)
    assert [e.data["version"] for e in await published("ticket.updated")] == [1]


async def test_a_redelivered_order_cancelled_is_applied_once(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published
) -> None:
    signin(client)
    ticket = await make_ticket()
    order_id, _ = await orders.created(ticket["id"])
    await wait_until(lambda: _is(stored, ticket["id"], (order_id, 1)))
    event_id = await orders.cancelled(ticket["id"], order_id)
    await orders.cancelled(ticket["id"], order_id, event_id=event_id, dedup_id=str(uuid.uuid4()))
    await orders.cancelled(ticket["id"], order_id)  # and once more under a new event id

    await wait_until(lambda: _count(app, "order.cancelled", "duplicate"))
    await wait_until(lambda: _count(app, "order.cancelled", "ok", at_least=2))
    assert await _state(stored, ticket["id"]) == (None, 2)
    assert [e.data["version"] for e in await published("ticket.updated")] == [1, 2]


async def test_an_order_cancelled_arriving_before_its_order_created_leaves_the_ticket_free(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published
) -> None:
    signin(client)
    ticket = await make_ticket()
    order_id = uuid.uuid4()
    await orders.cancelled(ticket["id"], order_id)
    await wait_until(lambda: _count(app, "order.cancelled", "ok"))
    await orders.created(ticket["id"], order_id)
    await wait_until(lambda: _count(app, "order.created", "ok"))

    assert await _state(stored, ticket["id"]) == (None, 0)
    assert await published("ticket.updated") == []
    # ... and the ticket is still for sale: the next order holds it.
    next_order, _ = await orders.created(ticket["id"])
    await wait_until(lambda: _is(stored, ticket["id"], (next_order, 1)))


async def test_a_cancellation_of_another_order_does_not_release_the_ticket(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published
) -> None:
    signin(client)
    ticket = await make_ticket()
    order_id, _ = await orders.created(ticket["id"])
    await wait_until(lambda: _is(stored, ticket["id"], (order_id, 1)))
    await orders.cancelled(ticket["id"], uuid.uuid4())
    await wait_until(lambda: _count(app, "order.cancelled", "ok"))

    assert await _state(stored, ticket["id"]) == (order_id, 1)
    assert [e.data["version"] for e in await published("ticket.updated")] == [1]


async def test_a_new_order_waits_until_the_previous_holder_is_cancelled(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published
) -> None:
    signin(client)
    ticket = await make_ticket()
    first, _ = await orders.created(ticket["id"])
    await wait_until(lambda: _is(stored, ticket["id"], (first, 1)))
    # The orders service let a second order take the ticket after cancelling the first, but our
    # order.created consumer got the second order before our order.cancelled consumer got the cancellation.
    second, second_event = await orders.created(ticket["id"])
    await wait_until(lambda: _count(app, "order.created", "not_yet", at_least=2))  # redelivered, still waiting
    assert await _state(stored, ticket["id"]) == (first, 1)
    claimed = await app.state.db.pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE event_id = $1", str(second_event)
    )
    assert claimed == 0  # a delivery that did not apply leaves no inbox entry behind, so the next one can

    await orders.cancelled(ticket["id"], first)
    await wait_until(lambda: _is(stored, ticket["id"], (second, 3)), timeout=15)
    events = await published("ticket.updated")
    assert [(e.data["orderId"], e.data["version"]) for e in events] == [(str(first), 1), (None, 2), (str(second), 3)]


async def test_an_order_for_an_unknown_ticket_is_parked_after_retries_while_others_flow(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored
) -> None:
    signin(client)
    unknown = uuid.uuid4()
    _, bad_event = await orders.created(unknown)
    ticket = await make_ticket()
    good_order, _ = await orders.created(ticket["id"])
    await wait_until(lambda: _is(stored, ticket["id"], (good_order, 1)))

    async def parked() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await app.state.db.pool.fetchrow(
            "SELECT event_id, subject, deliveries, error FROM parked_messages"
        )
        return row

    row = await wait_until(parked, timeout=15)
    assert row["event_id"] == str(bad_event)
    assert row["subject"] == "order.created"
    assert row["deliveries"] == app.state.settings.event_max_deliveries
    assert "UnknownTicketError" in row["error"]
    assert await stored(unknown) is None


async def test_two_replicas_apply_a_burst_of_order_events_consistently(
    client: httpx.AsyncClient, app: FastAPI, settings, make_ticket, orders, stored, published
) -> None:
    signin(client)
    tickets = [await make_ticket(f"T{i}", 10) for i in range(12)]
    holders: dict[str, uuid.UUID | None] = {}
    async with running(create_app(settings)) as replica:
        for i, ticket in enumerate(tickets):
            order_id = uuid.uuid4()
            if i % 3 == 0:  # still held
                await orders.created(ticket["id"], order_id)
                holders[ticket["id"]] = order_id
            elif i % 3 == 1:  # created, then cancelled
                await orders.created(ticket["id"], order_id)
                await orders.cancelled(ticket["id"], order_id)
                holders[ticket["id"]] = None
            else:  # the cancellation published first
                await orders.cancelled(ticket["id"], order_id)
                await orders.created(ticket["id"], order_id)
                holders[ticket["id"]] = None
        published_events = 4 + 8 + 8

        def applied() -> float:
            return sum(_handled(a, s, "ok") for a in (app, replica) for s in ("order.created", "order.cancelled"))

        await wait_until(lambda: _async(applied() == published_events), timeout=20)
        assert all(
            _handled(a, s, "duplicate") == 0 for a in (app, replica) for s in ("order.created", "order.cancelled")
        )

    events = await published("ticket.updated")
    per_ticket: dict[str, list[int]] = {}
    for event in events:
        per_ticket.setdefault(event.data["id"], []).append(event.data["version"])
    for ticket in tickets:
        order_id, version = await _state(stored, ticket["id"])
        assert order_id == holders[ticket["id"]]
        # The two consumers are independent, so a cancelled order's two events may be applied in either
        # order: held then released (version 2), or never held (version 0). Never left held.
        assert version == (1 if holders[ticket["id"]] else 0) or (holders[ticket["id"]] is None and version == 2)
        assert sorted(per_ticket.get(ticket["id"], [])) == list(range(1, version + 1))  # once each, no gap


async def _async(value: bool) -> bool:
    return value


async def test_the_tombstone_of_a_cancelled_order_is_kept(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders
) -> None:
    signin(client)
    ticket = await make_ticket()
    order_id = uuid.uuid4()
    await orders.cancelled(ticket["id"], order_id)
    await wait_until(lambda: _count(app, "order.cancelled", "ok"))
    tombstone = await app.state.db.pool.fetchval("SELECT 1 FROM cancelled_orders WHERE order_id = $1", order_id)
    assert tombstone == 1


async def _is(stored, ticket_id: str, expected: tuple[uuid.UUID | None, int]) -> bool:
    return await _state(stored, ticket_id) == expected
