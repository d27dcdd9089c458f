"""Optimistic concurrency: racing writes of one ticket, across two replicas, end in one consistent version
chain; a write based on a stale version is rejected, never silently lost."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from ticketing_common.testing import http_client, running, signin, wait_until
from ticketing_tickets import service
from ticketing_tickets.main import create_app
from ticketing_tickets.models import Ticket

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
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Ticket).where(Ticket.id == snapshot.id).values(order_id=uuid.uuid4())  # no version bump
        )
    async with app.state.sessionmaker() as session, session.begin():
        written = await service._write(session, snapshot, available_only=True, title="edit", price=2)
    assert written is None
    assert (await stored(created["id"])).title == "v0"


async def test_an_order_cancelled_racing_its_order_created_never_leaves_the_ticket_held(
    client: httpx.AsyncClient, app: FastAPI, make_ticket, orders, stored
) -> None:
    signin(client)
    created = await make_ticket()
    order_id = uuid.uuid4()
    # Hold the ticket's row lock while both events arrive, so both handlers are in flight at once.
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(select(Ticket).where(Ticket.id == uuid.UUID(created["id"])).with_for_update())
        await orders.created(created["id"], order_id)
        await asyncio.sleep(0.3)  # order.created has checked for a tombstone and waits for the row
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
