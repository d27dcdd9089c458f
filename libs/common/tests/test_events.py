"""The event bus end to end over real PostgreSQL and NATS: unit of work, outbox, publisher, sweeper, batched
listeners, inbox, parking."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from common_demo import MIGRATIONS, Committed, DemoSettings, InFlight, Transactions, build_demo_app, sample_updated
from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.db import Database, OutboxMessage, cloudevent_headers
from ticketing_common.embedded import EmbeddedNats, EmbeddedPostgres
from ticketing_common.events import Event, TicketCreated
from ticketing_common.events.bus import ensure_stream
from ticketing_common.events.catalogue import encode
from ticketing_common.events.outbox import OutboxPublisher
from ticketing_common.testing import (
    http_client,
    prepare_database,
    running,
    stream_events,
    wait_for_events,
    wait_until,
)


async def _copy(app: FastAPI, ticket_id: uuid.UUID) -> Any:
    return await app.state.db.pool.fetchrow("SELECT * FROM ticket_copies WHERE id = $1", ticket_id)


async def _count(app: FastAPI, table: str) -> int:
    return int(await app.state.db.pool.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 (a test's constant)


def _ticket(title: str, ticket_id: uuid.UUID | None = None) -> TicketCreated:
    return TicketCreated(id=ticket_id or uuid.uuid4(), title=title, price=Decimal(1), user_id=uuid.uuid4(), version=0)


async def _publish_direct(js: JetStreamContext, event: Event, *, event_id: uuid.UUID | None = None) -> uuid.UUID:
    """Publish as another service's publisher would (the event id is both ce-id and the dedup id)."""
    eid = event_id or uuid.uuid4()
    headers = cloudevent_headers(event_id=eid, subject=event.subject, source="test", time=datetime.now(UTC))
    await js.publish(event.subject, encode(event), headers=headers)
    return eid


async def test_an_event_flows_from_the_outbox_through_jetstream_to_a_listener(
    demo_app: FastAPI, js: JetStreamContext
) -> None:
    async with http_client(demo_app) as client:
        response = await client.post("/demo/tickets", json={"title": "Concert", "price": 19.99})
    assert response.status_code == 201
    ticket_id = uuid.UUID(response.json()["id"])

    [event] = await wait_for_events(js, "ticket.created", 1)
    assert event.data == {
        "id": str(ticket_id),
        "title": "Concert",
        "price": 19.99,
        "userId": event.data["userId"],
        "version": 0,
        "eventId": None,
    }
    for header in ("Nats-Msg-Id", "ce-id", "ce-type", "ce-source", "ce-time", "ce-specversion"):
        assert header in event.headers
    assert event.headers["ce-type"] == "ticket.created"
    assert event.headers["ce-source"] == "demo"
    assert event.headers["Nats-Msg-Id"] == event.headers["ce-id"]

    copy = await wait_until(lambda: _copy(demo_app, ticket_id))
    assert (copy["title"], copy["version"]) == ("Concert", 0)

    async def marked_sent() -> bool:
        return await demo_app.state.db.pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0

    await wait_until(marked_sent)


async def test_nothing_is_written_published_or_reported_when_the_unit_of_work_raises(
    demo_app: FastAPI, js: JetStreamContext
) -> None:
    db: Database = demo_app.state.db
    reported: list[str] = []
    undo = db.watch_commits(lambda messages: reported.extend(m.subject for m in messages))
    after_commit: list[str] = []

    async def failing_use_case() -> None:
        async with db.unit_of_work() as uow:
            uow.publish(_ticket("never"))
            uow.after_commit(lambda: after_commit.append("never"))
            raise RuntimeError("the business write failed")

    with pytest.raises(RuntimeError):
        await failing_use_case()
    async with db.unit_of_work() as uow:
        uow.publish(_ticket("kept"))
        uow.after_commit(lambda: after_commit.append("kept"))
    undo()

    rows = await db.pool.fetch("SELECT payload FROM outbox")
    assert [json.loads(row["payload"])["title"] for row in rows] == ["kept"]
    assert reported == ["ticket.created"]
    assert after_commit == ["kept"]
    [event] = await wait_for_events(js, "ticket.created", 1)
    assert event.data["title"] == "kept"


async def test_a_units_events_are_written_as_it_commits_in_the_order_published(demo_app: FastAPI) -> None:
    await demo_app.state.events.stop_publisher()
    db: Database = demo_app.state.db
    titles = ["first", "second", "third"]
    async with db.unit_of_work() as uow:
        for title in titles:
            uow.publish(_ticket(title))
        assert await uow.conn.fetchval("SELECT count(*) FROM outbox") == 0  # staged, not yet written

    rows = await db.pool.fetch("SELECT * FROM outbox ORDER BY id")
    assert [json.loads(row["payload"])["title"] for row in rows] == titles
    assert all(row["sent_at"] is None and json.loads(row["headers"])["ce-id"] == str(row["event_id"]) for row in rows)


async def test_the_same_event_delivered_twice_is_applied_once(demo_app: FastAPI, js: JetStreamContext) -> None:
    ticket_id = uuid.uuid4()
    event = TicketCreated(id=ticket_id, title="Once", price=Decimal(5), user_id=uuid.uuid4(), version=0)
    event_id = await _publish_direct(js, event)
    # The second copy carries the same event id but another dedup id, as a redelivery outside
    # JetStream's duplicate window would.
    headers = cloudevent_headers(event_id=event_id, subject=event.subject, source="test", time=datetime.now(UTC))
    headers["Nats-Msg-Id"] = str(uuid.uuid4())
    await js.publish(event.subject, encode(event), headers=headers)

    await wait_until(lambda: _copy(demo_app, ticket_id))
    metrics = demo_app.state.metrics
    await wait_until(lambda: _async(metrics.events_handled.labels("ticket.created", "duplicate")._value.get() == 1))
    # The worker that applied it may count it after the other worker counted the duplicate.
    await wait_until(lambda: _async(metrics.events_handled.labels("ticket.created", "ok")._value.get() >= 1))
    assert metrics.events_handled.labels("ticket.created", "ok")._value.get() == 1
    assert await _count(demo_app, "ticket_copies") == 1
    assert await _count(demo_app, "processed_events") == 1


async def _async(value: object) -> object:
    return value


async def test_versions_arriving_out_of_order_are_applied_in_order(demo_app: FastAPI, js: JetStreamContext) -> None:
    ticket_id = uuid.uuid4()
    await _publish_direct(
        js, TicketCreated(id=ticket_id, title="v0", price=Decimal(5), user_id=uuid.uuid4(), version=0)
    )
    await wait_until(lambda: _copy(demo_app, ticket_id))
    await _publish_direct(js, sample_updated(ticket_id, 2, "v2"))
    await asyncio.sleep(0.2)  # v2 is tried first and told "not yet"
    await _publish_direct(js, sample_updated(ticket_id, 1, "v1"))

    async def at_v2() -> Any:
        copy = await _copy(demo_app, ticket_id)
        return copy if copy is not None and copy["version"] == 2 else None

    copy = await wait_until(at_v2, timeout=15)
    assert copy["title"] == "v2"
    assert demo_app.state.metrics.events_handled.labels("ticket.updated", "not_yet")._value.get() >= 1
    # A stale version arriving late changes nothing.
    await _publish_direct(js, sample_updated(ticket_id, 1, "stale"))
    await asyncio.sleep(0.3)
    copy = await _copy(demo_app, ticket_id)
    assert copy is not None
    assert (copy["title"], copy["version"]) == ("v2", 2)


async def test_events_committed_by_a_process_that_died_before_publishing_are_swept_once(
    demo_app: FastAPI, js: JetStreamContext
) -> None:
    await demo_app.state.events.stop_publisher()  # as if the process died right after its commit
    db: Database = demo_app.state.db
    ticket_id = uuid.uuid4()
    async with db.unit_of_work() as uow:
        uow.publish(_ticket("orphan", ticket_id))
    await asyncio.sleep(0.3)
    assert await stream_events(js, "ticket.created") == []

    sweeper = OutboxPublisher(pool=db.pool, js=demo_app.state.events.js, stream=demo_app.state.settings.nats_stream)
    assert await sweeper.sweep(older_than_seconds=60) == 0  # younger rows may still be in flight from memory
    assert await sweeper.sweep(older_than_seconds=0) == 1
    await wait_until(lambda: _copy(demo_app, ticket_id))
    assert await sweeper.sweep(older_than_seconds=0) == 0  # marked sent: never again
    assert len(await stream_events(js, "ticket.created")) == 1


async def test_a_sweeper_crash_between_publish_and_mark_sent_causes_no_double_effect(
    demo_settings: DemoSettings, js: JetStreamContext
) -> None:
    app = build_demo_app(demo_settings)
    async with running(app):
        await app.state.events.stop_publisher()
        db: Database = app.state.db
        ticket_id = uuid.uuid4()
        async with db.unit_of_work() as uow:
            uow.publish(_ticket("crash", ticket_id))

        async def crash(messages: Sequence[OutboxMessage]) -> None:
            raise ConnectionResetError("sweeper killed after publishing")

        js_ctx, stream = app.state.events.js, demo_settings.nats_stream
        crashing = OutboxPublisher(pool=db.pool, js=js_ctx, stream=stream, after_publish=crash)
        with pytest.raises(ConnectionResetError):
            await crashing.sweep(older_than_seconds=0)
        healthy = OutboxPublisher(pool=db.pool, js=js_ctx, stream=stream)
        assert await healthy.sweep(older_than_seconds=0) == 1  # the row was still unsent: published again

        await wait_until(lambda: _copy(app, ticket_id))
        await asyncio.sleep(0.3)
        events = await stream_events(js, "ticket.created")
        assert len(events) == 1  # JetStream dropped the second publish as a duplicate
        assert app.state.metrics.events_handled.labels("ticket.created", "ok")._value.get() == 1


async def test_a_poison_message_is_parked_after_the_retry_bound_while_the_next_flows(
    demo_app: FastAPI, js: JetStreamContext
) -> None:
    poison_id = await _publish_direct(
        js, TicketCreated(id=uuid.uuid4(), title="poison", price=Decimal(1), user_id=uuid.uuid4(), version=0)
    )
    good_id = uuid.uuid4()
    await _publish_direct(
        js, TicketCreated(id=good_id, title="good", price=Decimal(1), user_id=uuid.uuid4(), version=0)
    )
    await wait_until(lambda: _copy(demo_app, good_id))

    async def parked() -> Any:
        return await demo_app.state.db.pool.fetchrow("SELECT * FROM parked_messages")

    row = await wait_until(parked, timeout=15)
    assert row["event_id"] == str(poison_id)
    assert row["subject"] == "ticket.created"
    assert row["deliveries"] == demo_app.state.settings.event_max_deliveries
    assert "cannot handle poison" in row["error"]
    assert json.loads(row["data"])["title"] == "poison"


async def test_a_malformed_message_is_parked_at_once(demo_app: FastAPI, js: JetStreamContext) -> None:
    await js.publish("ticket.created", b'{"not": "a ticket"}', headers={"ce-id": "bad-1"})

    async def parked() -> Any:
        return await demo_app.state.db.pool.fetchrow("SELECT * FROM parked_messages")

    row = await wait_until(parked)
    assert row["deliveries"] == 1
    assert row["event_id"] == "bad-1"


async def test_two_listener_instances_split_the_work_and_handle_no_event_twice(
    demo_settings: DemoSettings, js: JetStreamContext
) -> None:
    first, second = build_demo_app(demo_settings), build_demo_app(demo_settings)
    count = 200
    async with running(first), running(second):
        for _ in range(count):
            await _publish_direct(
                js,
                TicketCreated(id=uuid.uuid4(), title="t", price=Decimal(1), user_id=uuid.uuid4(), version=0),
            )

        async def all_copied() -> bool:
            return await _count(first, "ticket_copies") == count

        await wait_until(all_copied, timeout=30)
        handled = [
            app.state.metrics.events_handled.labels("ticket.created", "ok")._value.get() for app in (first, second)
        ]
        duplicates = [
            app.state.metrics.events_handled.labels("ticket.created", "duplicate")._value.get()
            for app in (first, second)
        ]
    assert sum(handled) == count
    assert all(h > 0 for h in handled), handled
    assert sum(duplicates) == 0


async def test_metrics_expose_requests_events_lag_and_backlog(demo_app: FastAPI, js: JetStreamContext) -> None:
    async with http_client(demo_app) as client:
        created = await client.post("/demo/tickets", json={"title": "m", "price": 1})
        await wait_until(lambda: _copy(demo_app, uuid.UUID(created.json()["id"])))

        async def counted() -> str | None:
            # The handler's commit shows first; the event is counted right after it is acknowledged, and the
            # backlog once a sweep has found nothing left.
            text = (await client.get("/metrics")).text
            done = 'event_lag_seconds_count{subject="ticket.created"} 1.0' in text and "outbox_backlog 0.0" in text
            return text if done else None

        text = await wait_until(counted)
    assert 'http_requests_total{method="POST",route="/demo/tickets",status="201"} 1.0' in text
    assert "http_request_duration_seconds_bucket" in text
    assert 'events_handled_total{outcome="ok",subject="ticket.created"} 1.0' in text
    assert 'event_lag_seconds_count{subject="ticket.created"} 1.0' in text
    assert "outbox_backlog 0.0" in text


async def test_readiness_reports_database_and_nats(demo_app: FastAPI) -> None:
    async with http_client(demo_app) as client:
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")
    assert ready.status_code == 200
    assert alive.status_code == 200


async def test_the_relay_and_listeners_keep_working_across_a_nats_outage(
    demo_settings: DemoSettings, tmp_path: Path
) -> None:
    own_nats = EmbeddedNats(tmp_path / "nats")
    own_nats.start()
    try:
        app = build_demo_app(demo_settings.model_copy(update={"nats_url": own_nats.url}))
        async with running(app), http_client(app) as client:
            first = await client.post("/demo/tickets", json={"title": "before", "price": 1})
            await wait_until(lambda: _copy(app, uuid.UUID(first.json()["id"])))

            own_nats.stop()
            during = await client.post("/demo/tickets", json={"title": "during", "price": 1})
            assert during.status_code == 201  # the write succeeds: the event waits in the outbox
            await asyncio.sleep(1.0)
            own_nats.start()

            copy = await wait_until(lambda: _copy(app, uuid.UUID(during.json()["id"])), timeout=30)
            assert copy["title"] == "during"
    finally:
        own_nats.stop()


async def test_requests_recover_after_a_database_crash_with_at_most_one_failure(
    demo_settings: DemoSettings, tmp_path: Path
) -> None:
    # Pooled connections are found dead by their first use, which must replace the whole pool.
    own_postgres = EmbeddedPostgres(tmp_path / "postgres")
    own_postgres.start()
    try:
        settings = demo_settings.model_copy(update={"database_url": own_postgres.url})
        await prepare_database(settings, MIGRATIONS)
        app = build_demo_app(settings)
        async with running(app), http_client(app) as client:
            # Several requests at once, so the pool holds several connections when the server dies.
            before = await asyncio.gather(
                *(client.post("/demo/tickets", json={"title": f"before {i}", "price": 1}) for i in range(8))
            )
            assert {r.status_code for r in before} == {201}

            own_postgres.kill()
            own_postgres.start()

            after = [
                (await client.post("/demo/tickets", json={"title": f"after {i}", "price": 1})).status_code
                for i in range(8)
            ]
        assert after.count(503) <= 1
        assert set(after) <= {201, 503}
        assert after[-1] == 201
    finally:
        own_postgres.stop()


async def test_requests_get_503_in_the_shared_format_when_the_database_is_down(js: JetStreamContext) -> None:
    from common_demo import DemoSettings as Settings

    from ticketing_common.embedded import free_port
    from ticketing_common.testing import session_settings

    settings = Settings(
        **session_settings(),
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
        nats_url="nats://127.0.0.1:1",
    )
    app = build_demo_app(settings)
    async with LifespanManager(app), http_client(app) as client:
        response = await client.post("/demo/tickets", json={"title": "x", "price": 1})
        ready = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"errors": [{"message": "Error connecting to database"}]}
    assert ready.status_code == 503
    assert {e["message"] for e in ready.json()["errors"]} == {
        "database unreachable",
        "nats unreachable",
        "sessions cannot be checked yet (public keys or revocations not loaded)",
    }


async def test_one_instance_handles_several_events_of_a_subject_at_once(
    demo_settings: DemoSettings, js: JetStreamContext
) -> None:
    InFlight.now = InFlight.most = 0
    app = build_demo_app(demo_settings.model_copy(update={"event_concurrency": 4}))
    async with running(app):
        ids = [
            await _publish_direct(
                js, TicketCreated(id=uuid.uuid4(), title="slow", price=Decimal(1), user_id=uuid.uuid4(), version=0)
            )
            for _ in range(8)
        ]

        async def all_copied() -> bool:
            return await _count(app, "ticket_copies") == len(ids)

        await wait_until(all_copied, timeout=30)
    assert InFlight.most > 1  # a slow transaction did not hold up the events behind it
    assert app.state.metrics.events_handled.labels("ticket.created", "ok")._value.get() == len(ids)


async def test_a_commit_is_published_at_once_without_waiting_for_a_sweep(
    demo_settings: DemoSettings, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ticketing_common.events import outbox

    monkeypatch.setattr(outbox, "SWEEP_EVERY_SECONDS", 3600.0)  # only the after-commit publish can send it
    app = build_demo_app(demo_settings.model_copy(update={"outbox_sweep_after_seconds": 3600.0}))
    async with running(app), http_client(app) as client:
        response = await client.post("/demo/tickets", json={"title": "at once", "price": 1})
        [event] = await wait_for_events(js, "ticket.created", 1, timeout=5)
        assert event.data["id"] == response.json()["id"]

        async def marked_sent() -> bool:
            return await app.state.db.pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0

        await wait_until(marked_sent)


async def test_the_backlog_gauge_counts_the_rows_a_full_sweep_left_behind(
    demo_settings: DemoSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ticketing_common.events import outbox

    app = build_demo_app(demo_settings)
    async with running(app):
        await app.state.events.stop_publisher()
        async with app.state.db.unit_of_work() as uow:
            for title in ("a", "b", "c"):
                uow.publish(_ticket(title))
        monkeypatch.setattr(outbox, "SWEEP_BATCH_SIZE", 2)
        sweeper = OutboxPublisher(
            pool=app.state.db.pool,
            js=app.state.events.js,
            stream=demo_settings.nats_stream,
            metrics=app.state.metrics,
        )
        assert await sweeper.sweep(older_than_seconds=0) == 2
        assert app.state.metrics.outbox_backlog._value.get() == 1
        assert await sweeper.sweep(older_than_seconds=0) == 1
        assert app.state.metrics.outbox_backlog._value.get() == 0


async def test_events_that_arrived_together_are_applied_in_one_transaction(
    demo_settings: DemoSettings, js: JetStreamContext
) -> None:
    await ensure_stream(js, demo_settings.nats_stream)  # the events wait before any listener runs
    Transactions.by_ticket.clear()
    ids = [uuid.uuid4() for _ in range(50)]
    for ticket_id in ids:  # all waiting before the listener starts
        await _publish_direct(js, _ticket("batched", ticket_id))
    app = build_demo_app(demo_settings.model_copy(update={"event_concurrency": 1}))
    async with running(app):
        await wait_until(lambda: _async_count_is(app, len(ids)), timeout=30)
        handled = app.state.metrics.events_handled.labels("ticket.created", "ok")._value.get()
    assert handled == len(ids)
    transactions = {Transactions.by_ticket[ticket_id] for ticket_id in ids}
    assert len(transactions) < len(ids) / 5  # most arrived in the first batches


async def test_a_batch_with_a_bad_event_replays_one_by_one_so_only_the_bad_one_is_held_back(
    demo_settings: DemoSettings, js: JetStreamContext
) -> None:
    await ensure_stream(js, demo_settings.nats_stream)  # the events wait before any listener runs
    good = [uuid.uuid4() for _ in range(20)]
    ticket_id = uuid.uuid4()
    await _publish_direct(js, _ticket("v0", ticket_id))
    for index, good_id in enumerate(good):
        await _publish_direct(js, _ticket("good", good_id))
        if index == 5:
            poison_id = await _publish_direct(js, _ticket("poison"))
    app = build_demo_app(demo_settings.model_copy(update={"event_concurrency": 1}))
    async with running(app):
        await wait_until(lambda: _async_count_is(app, len(good) + 1), timeout=30)

        async def parked() -> Any:
            return await app.state.db.pool.fetchrow("SELECT * FROM parked_messages")

        row = await wait_until(parked, timeout=15)
        assert all(await asyncio.gather(*(_copy(app, good_id) for good_id in good)))
    assert row["event_id"] == str(poison_id)


async def test_versions_out_of_order_in_one_batch_are_still_applied_in_order(
    demo_settings: DemoSettings, js: JetStreamContext
) -> None:
    await ensure_stream(js, demo_settings.nats_stream)  # the events wait before any listener runs
    ticket_id = uuid.uuid4()
    await _publish_direct(js, _ticket("v0", ticket_id))
    await _publish_direct(js, sample_updated(ticket_id, 2, "v2"))
    await _publish_direct(js, sample_updated(ticket_id, 1, "v1"))
    app = build_demo_app(demo_settings.model_copy(update={"event_concurrency": 1}))
    async with running(app):

        async def at_v2() -> Any:
            copy = await _copy(app, ticket_id)
            return copy if copy is not None and copy["version"] == 2 else None

        copy = await wait_until(at_v2, timeout=15)
    assert copy["title"] == "v2"


async def _async_count_is(app: FastAPI, count: int) -> bool:
    return await _count(app, "ticket_copies") == count


async def test_the_listener_hears_once_that_an_event_committed_and_not_for_a_redelivery(
    demo_app: FastAPI, js: JetStreamContext
) -> None:
    event = TicketCreated(id=uuid.uuid4(), title="Told", price=Decimal(5), user_id=uuid.uuid4(), version=0)
    event_id = await _publish_direct(js, event)
    headers = cloudevent_headers(event_id=event_id, subject=event.subject, source="test", time=datetime.now(UTC))
    headers["Nats-Msg-Id"] = str(uuid.uuid4())  # the same event again, past JetStream's duplicate window

    await wait_until(lambda: _async(event.id in Committed.ids))
    await js.publish(event.subject, encode(event), headers=headers)
    metrics = demo_app.state.metrics
    await wait_until(lambda: _async(metrics.events_handled.labels("ticket.created", "duplicate")._value.get() == 1))

    assert Committed.ids.count(event.id) == 1
    assert await _copy(demo_app, event.id) is not None
