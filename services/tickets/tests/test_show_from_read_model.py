"""``GET /api/tickets/:id`` from the replica's read model (``cache.py``), through the real PostgreSQL and NATS:
served without a database read once known, current after this replica's writes at once, after another
replica's writes once their events arrive, never going back to an older version."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI

from ticketing_common.embedded import EmbeddedNats
from ticketing_common.testing import http_client, recorded_statements, running, signin, wait_until
from ticketing_tickets.main import create_app


async def test_a_ticket_created_here_is_shown_without_reading_the_database(
    app: FastAPI, client: httpx.AsyncClient, make_ticket
) -> None:
    signin(client)
    ticket = await make_ticket("Opera", 55)
    async with recorded_statements(app) as sent:
        responses = [await client.get(f"/api/tickets/{ticket['id']}") for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert all(r.json() == ticket for r in responses)
    assert responses[0].headers["content-type"] == "application/json"
    assert sent == []


async def test_a_ticket_read_once_is_served_from_memory_afterwards(
    app: FastAPI, client: httpx.AsyncClient, make_ticket
) -> None:
    signin(client)
    ticket = await make_ticket("Opera", 55)
    app.state.ticket_cache.clear()  # as after a restart: the replica knows nothing yet
    async with recorded_statements(app) as sent:
        first = await client.get(f"/api/tickets/{ticket['id']}")
    assert first.json() == ticket
    assert any("FROM tickets" in s for s in sent)
    async with recorded_statements(app) as sent:
        again = await client.get(f"/api/tickets/{ticket['id']}")
    assert (again.status_code, again.json(), sent) == (200, ticket, [])


async def test_an_update_here_is_shown_at_once(client: httpx.AsyncClient, make_ticket) -> None:
    signin(client)
    ticket = await make_ticket("Opera", 55)
    await client.get(f"/api/tickets/{ticket['id']}")
    updated = await client.put(f"/api/tickets/{ticket['id']}", json={"title": "Ballet", "price": 60})
    assert updated.status_code == 200
    shown = await client.get(f"/api/tickets/{ticket['id']}")
    assert shown.json() == updated.json()
    assert (shown.json()["title"], shown.json()["version"]) == ("Ballet", 1)


async def test_the_hold_of_an_order_is_shown_once_its_event_is_handled(
    client: httpx.AsyncClient, make_ticket, orders
) -> None:
    signin(client)
    ticket = await make_ticket()
    assert (await client.get(f"/api/tickets/{ticket['id']}")).json()["orderId"] is None
    order_id, _ = await orders.created(ticket["id"])

    async def held() -> dict | None:
        body = (await client.get(f"/api/tickets/{ticket['id']}")).json()
        return body if body["orderId"] == str(order_id) else None

    assert (await wait_until(held))["version"] == 1
    await orders.cancelled(ticket["id"], order_id)

    async def released() -> dict | None:
        body = (await client.get(f"/api/tickets/{ticket['id']}")).json()
        return body if body["version"] == 2 else None

    assert (await wait_until(released))["orderId"] is None


async def test_another_replicas_writes_are_shown_once_their_events_arrive_and_never_go_back(
    client: httpx.AsyncClient, settings, make_ticket
) -> None:
    user = signin(client)
    ticket = await make_ticket("v0", 1)
    async with running(create_app(settings)) as replica, http_client(replica) as other:
        signin(other, user_id=user.id)
        shown = await other.get(f"/api/tickets/{ticket['id']}")
        assert shown.json() == ticket  # now in the other replica's cache
        seen_versions: list[int] = []

        async def watch() -> None:
            while True:
                seen_versions.append((await other.get(f"/api/tickets/{ticket['id']}")).json()["version"])
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        for i in range(1, 6):
            response = await client.put(f"/api/tickets/{ticket['id']}", json={"title": f"v{i}", "price": i})
            assert response.json()["version"] == i

        async def caught_up() -> dict | None:
            body = (await other.get(f"/api/tickets/{ticket['id']}")).json()
            return body if body["version"] == 5 else None

        final = await wait_until(caught_up)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert (final["title"], final["price"]) == ("v5", 5)
    assert seen_versions == sorted(seen_versions)  # never an older version after a newer one


async def test_a_change_made_without_an_event_shows_only_after_the_ttl(
    app: FastAPI, client: httpx.AsyncClient, settings, make_ticket
) -> None:
    """Every change of a ticket publishes an event; the TTL bounds what a lost one could cost."""
    signin(client)
    short_ttl = create_app(settings.model_copy(update={"ticket_cache_ttl_seconds": 0.5}))
    async with running(short_ttl) as replica, http_client(replica) as short:
        signin(short)
        ticket = (await short.post("/api/tickets", json={"title": "Jazz", "price": 5})).json()
        # Behind the service's back, no event.
        await app.state.db.pool.execute("UPDATE tickets SET title = 'Blues' WHERE id = $1", uuid.UUID(ticket["id"]))
        assert (await short.get(f"/api/tickets/{ticket['id']}")).json()["title"] == "Jazz"

        async def reread() -> str | None:
            title: str = (await short.get(f"/api/tickets/{ticket['id']}")).json()["title"]
            return title if title == "Blues" else None

        assert await wait_until(reread, timeout=5)


async def test_with_the_cache_off_every_show_reads_the_database(client: httpx.AsyncClient, settings) -> None:
    uncached = create_app(settings.model_copy(update={"ticket_cache_size": 0}))
    async with running(uncached) as replica, http_client(replica) as plain:
        signin(plain)
        ticket = (await plain.post("/api/tickets", json={"title": "Jazz", "price": 5})).json()
        async with recorded_statements(replica) as sent:
            shown = [(await plain.get(f"/api/tickets/{ticket['id']}")).json() for _ in range(2)]
        assert shown == [ticket, ticket]
        assert sum("FROM tickets" in s for s in sent) == 2
        assert len(replica.state.ticket_cache) == 0


async def test_during_a_nats_outage_every_show_reads_the_database_and_the_cache_starts_over_after(
    settings, tmp_path: Path
) -> None:
    own_nats = EmbeddedNats(tmp_path / "nats")
    own_nats.start()
    try:
        on_own_nats = settings.model_copy(update={"nats_url": own_nats.url})
        async with (
            running(create_app(on_own_nats)) as writer,
            running(create_app(on_own_nats)) as reader,
            http_client(writer) as owner,
            http_client(reader) as visitor,
        ):
            signin(owner)
            ticket = (await owner.post("/api/tickets", json={"title": "v0", "price": 1})).json()
            path = f"/api/tickets/{ticket['id']}"
            await visitor.get(path)
            async with recorded_statements(reader) as sent:
                assert (await visitor.get(path)).json()["version"] == 0
            assert sent == []  # known to the reader's cache

            own_nats.stop()
            nc = reader.state.events.nc
            await wait_until(lambda: _true(not nc.is_connected))
            edited = await owner.put(path, json={"title": "v1", "price": 2})
            assert edited.status_code == 200  # its event waits in the outbox
            async with recorded_statements(reader) as sent:
                shown = (await visitor.get(path)).json()
            assert (shown["version"], shown["title"]) == (1, "v1")  # not the cached v0: the feed is down
            assert any("FROM tickets" in s for s in sent)

            own_nats.start()
            await wait_until(lambda: _true(nc.is_connected), timeout=30)
            await visitor.get(path)
            async with recorded_statements(reader) as sent:
                assert (await visitor.get(path)).json()["version"] == 1
            assert sent == []  # serving from memory again
    finally:
        own_nats.stop()


async def _true(value: bool) -> bool | None:
    return value or None
