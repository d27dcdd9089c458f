"""Optimistic concurrency: racing writes of one ticket, across two replicas, end in one consistent version
chain; a write based on a stale version is rejected, never silently lost."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
from fastapi import FastAPI

from ticketing_common.testing import http_client, running, signin, wait_until
from ticketing_tickets import queries
from ticketing_tickets.main import create_app

WRITERS = 20


async def test_concurrent_updates_without_version_all_apply_one_after_another(
    client: httpx.AsyncClient, settings, make_ticket, stored, published
) -> None:
    user = signin(client)
    ticket = await make_ticket("v0", 1)
    async with running(create_app(settings)) as replica, http_client(replica) as other:
        signin(other, user_id=user.id)

        async def put(i: int) -> httpx.Response:
            http = client if i % 2 else other
            return await http.put(f"/api/tickets/{ticket['id']}", json={"title": f"edit {i}", "price": i + 1})

        responses = await asyncio.gather(*(put(i) for i in range(WRITERS)))

    assert [r.status_code for r in responses] == [200] * WRITERS
    versions = sorted(r.json()["version"] for r in responses)
    assert versions == list(range(1, WRITERS + 1))  # each write got its own version: none overwrote another

    events = await published("ticket.updated")
    assert sorted(e.data["version"] for e in events) == list(range(1, WRITERS + 1))
    by_version = {e.data["version"]: e.data for e in events}
    for response in responses:  # each event shows exactly the state its write produced
        body = response.json()
        assert (by_version[body["version"]]["title"], by_version[body["version"]]["price"]) == (
            body["title"],
            body["price"],
        )
    final = await stored(ticket["id"])
    assert (final.version, final.title) == (WRITERS, by_version[WRITERS]["title"])


async def test_concurrent_updates_of_the_same_version_let_exactly_one_win(
    client: httpx.AsyncClient, settings, make_ticket, stored, published
) -> None:
    user = signin(client)
    ticket = await make_ticket("v0", 1)
    async with running(create_app(settings)) as replica, http_client(replica) as other:
        signin(other, user_id=user.id)

        async def put(i: int) -> httpx.Response:
            http = client if i % 2 else other
            body = {"title": f"edit {i}", "price": i + 1, "version": 0}
            return await http.put(f"/api/tickets/{ticket['id']}", json=body)

        responses = await asyncio.gather(*(put(i) for i in range(WRITERS)))

    assert Counter(r.status_code for r in responses) == {200: 1, 409: WRITERS - 1}
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert winner["version"] == 1
    final = await stored(ticket["id"])
    assert (final.title, final.version) == (winner["title"], 1)
    assert [(e.data["title"], e.data["version"]) for e in await published("ticket.updated")] == [(winner["title"], 1)]


async def test_updates_racing_an_order_stop_at_the_reservation_and_keep_one_chain(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored, published
) -> None:
    signin(client)
    ticket = await make_ticket("v0", 1)
    order_id = uuid.uuid4()

    async def put(i: int) -> httpx.Response:
        await asyncio.sleep(0.005 * i)
        return await client.put(f"/api/tickets/{ticket['id']}", json={"title": f"edit {i}", "price": i + 1})

    async def reserve() -> None:
        await asyncio.sleep(0.02)
        await orders.created(ticket["id"], order_id)

    results = await asyncio.gather(*(put(i) for i in range(WRITERS)), reserve())
    responses = [r for r in results if isinstance(r, httpx.Response)]

    async def held() -> bool:
        current = await stored(ticket["id"])
        return current.order_id == order_id

    await wait_until(held)
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 400}
    for response in responses:
        if response.status_code == 400:
            assert response.json() == {"errors": [{"message": "Cannot edit a reserved ticket"}]}

    events = await published("ticket.updated")
    chain = sorted(events, key=lambda e: e.data["version"])
    assert [e.data["version"] for e in chain] == list(range(1, statuses[200] + 2))
    # The reservation is applied on top of the last successful edit and nothing is applied after it.
    assert chain[-1].data["orderId"] == str(order_id)
    assert all(e.data["orderId"] is None for e in chain[:-1])
    final = await stored(ticket["id"])
    assert (final.version, final.title) == (chain[-1].data["version"], chain[-1].data["title"])


async def test_an_edit_never_lands_on_a_held_ticket_even_if_the_hold_kept_the_version(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, stored
) -> None:
    # Belt and braces: every hold bumps the version, but the edit's UPDATE also requires order_id IS NULL.
    signin(client)
    created = await make_ticket("v0", 1)
    snapshot = await stored(created["id"])
    order_id = uuid.uuid4()
    pool = app.state.db.pool
    await pool.execute("UPDATE tickets SET order_id = $1 WHERE id = $2", order_id, snapshot.id)  # no version bump
    edit = await queries.edit_ticket(
        pool, ticket_id=snapshot.id, user_id=snapshot.user_id, title="edit", price=2, expected_version=0
    )
    assert edit is not None
    assert (edit.written, edit.order_id, edit.version) == (None, order_id, 0)
    response = await client.put(f"/api/tickets/{created['id']}", json={"title": "edit", "price": 2, "version": 0})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Cannot edit a reserved ticket"}]}
    assert (await stored(created["id"])).title == "v0"


async def _edit_waiting_for(
    app: FastAPI, client: httpx.AsyncClient, ticket_id: str, change: str, *args: object, body: dict
) -> httpx.Response:
    """A PUT sent while another transaction has changed the ticket's row and not committed yet: it waits for
    that commit, then answers."""
    async with app.state.db.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(change, uuid.UUID(ticket_id), *args)
            put = asyncio.create_task(client.put(f"/api/tickets/{ticket_id}", json=body))
            await asyncio.sleep(0.3)
            assert not put.done()  # the edit's UPDATE waits for the row
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()
    return await put


HOLD = "UPDATE tickets SET order_id = $2, version = version + 1 WHERE id = $1"
EDIT = "UPDATE tickets SET title = $2, version = version + 1 WHERE id = $1"


async def test_an_edit_waiting_for_a_hold_in_flight_answers_400_once_the_hold_commits(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, stored
) -> None:
    signin(client)
    created = await make_ticket("v0", 1)
    order_id = uuid.uuid4()
    response = await _edit_waiting_for(app, client, created["id"], HOLD, order_id, body={"title": "late", "price": 2})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Cannot edit a reserved ticket"}]}
    ticket = await stored(created["id"])
    assert (ticket.title, ticket.order_id, ticket.version) == ("v0", order_id, 1)


async def test_an_edit_waiting_for_another_edit_applies_on_top_of_it(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, stored, published
) -> None:
    signin(client)
    created = await make_ticket("v0", 1)
    response = await _edit_waiting_for(app, client, created["id"], EDIT, "first", body={"title": "second", "price": 2})
    assert response.status_code == 200
    assert (response.json()["title"], response.json()["version"]) == ("second", 2)
    ticket = await stored(created["id"])
    assert (ticket.title, ticket.version) == ("second", 2)
    assert [(e.data["title"], e.data["version"]) for e in await published("ticket.updated")] == [("second", 2)]


async def test_an_edit_of_the_version_it_read_waiting_for_another_edit_is_409(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, stored, published
) -> None:
    signin(client)
    created = await make_ticket("v0", 1)
    body = {"title": "second", "price": 2, "version": 0}
    response = await _edit_waiting_for(app, client, created["id"], EDIT, "first", body=body)
    assert response.status_code == 409
    assert response.json() == {"errors": [{"message": "Ticket was modified, reload and try again"}]}
    ticket = await stored(created["id"])
    assert (ticket.title, ticket.version) == ("first", 1)
    assert await published("ticket.updated") == []


async def test_an_order_cancelled_racing_its_order_created_never_leaves_the_ticket_held(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored
) -> None:
    signin(client)
    created = await make_ticket()
    order_id = uuid.uuid4()
    # Hold the ticket's row lock while both events arrive, so both listeners are in flight at once.
    async with app.state.db.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT FROM tickets WHERE id = $1 FOR UPDATE", uuid.UUID(created["id"]))
        await orders.created(created["id"], order_id)
        await asyncio.sleep(0.3)  # order.created waits for the row
        await orders.cancelled(created["id"], order_id)
        await asyncio.sleep(0.3)

    def handled(subject: str) -> float:
        value: float = app.state.metrics.events_handled.labels(subject, "ok")._value.get()
        return value

    async def both_applied() -> bool:
        return handled("order.created") == 1 and handled("order.cancelled") == 1

    await wait_until(both_applied)
    ticket = await stored(created["id"])
    assert ticket.order_id is None
    assert ticket.version in (0, 2)
