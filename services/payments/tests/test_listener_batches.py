"""Events applied in batches (one transaction each) give exactly what one event at a time gives: order.created's
copies in one statement, and a batch that fails replayed event by event so only the failing event waits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ticketing_common.db import UnitOfWork
from ticketing_common.events import Listener, OrderCancelled, OrderCreated, OrderStatus
from ticketing_common.events.catalogue import TicketRef
from ticketing_common.events.listener import ListenerRunner
from ticketing_common.testing import running, wait_until
from ticketing_payments.config import Settings
from ticketing_payments.listeners import OrderCancelledListener, OrderCreatedListener
from ticketing_payments.main import create_app


class Recording(OrderCreatedListener):
    """The order.created listener, noting how it was called."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app.state.order_copy_waits)
        self.calls: list[tuple[str, int]] = []

    async def handle(self, event: OrderCreated, uow: UnitOfWork) -> None:
        self.calls.append(("one", 1))
        await super().handle(event, uow)

    async def handle_batch(self, events: Sequence[OrderCreated], uow: UnitOfWork) -> None:
        self.calls.append(("batch", len(events)))
        await super().handle_batch(events, uow)


@pytest.fixture
async def app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FastAPI]:
    """The service without listeners of its own: each test hands its listener a batch itself."""
    monkeypatch.setattr("ticketing_payments.main.listeners", lambda app: [])
    async with running(create_app(settings)) as app:

        async def hears() -> bool:
            return bool(app.state.order_copy_waits.hears_other_replicas)

        await wait_until(hears)
        yield app


def runner(app: FastAPI, js: JetStreamContext, listener: Listener[Any]) -> ListenerRunner:
    return ListenerRunner(
        listener,
        service="payments",
        js=js,
        stream=app.state.settings.nats_stream,
        db=app.state.db,
        metrics=app.state.metrics,
    )


async def delivered(js: JetStreamContext, subject: str, count: int) -> list[Msg]:
    """The first ``count`` messages on ``subject``, as a pull consumer of the test's own receives them."""
    sub = await js.pull_subscribe(subject, durable=f"test-{uuid.uuid4().hex[:12]}", stream="TICKETING")
    messages: list[Msg] = []
    while len(messages) < count:
        messages += await sub.fetch(count - len(messages), timeout=5)
    return messages


async def test_a_batch_of_order_created_is_copied_in_one_statement_and_announces_every_copy(
    app: FastAPI, bus: Any, js: JetStreamContext
) -> None:
    events = [bus.order_created(user_id=uuid.uuid4(), price=f"{n}.25") for n in range(1, 21)]
    for event in events:
        await bus.publish(event)
    listener = Recording(app)
    waits = app.state.order_copy_waits
    with waits.watch(events[0].id) as first, waits.watch(events[-1].id) as last:
        outcomes = await runner(app, js, listener).process_batch(await delivered(js, "order.created", 20))

        assert outcomes == ["ok"] * 20
        assert listener.calls == [("batch", 20)]
        for event in events:
            copy = await bus.order_copy(event.id)
            assert copy is not None
            assert (copy.user_id, copy.status, copy.price, copy.expires_at, copy.version, copy.charge_attempt) == (
                event.user_id,
                OrderStatus.CREATED,
                event.ticket.price,
                event.expires_at,
                0,
                0,
            )

        # Each fresh event's committed hook announced its copy on core NATS, which wakes waiting payments.
        async def woken() -> bool:
            return first.is_set() and last.is_set()

        await wait_until(woken)


async def test_a_batch_applies_an_event_delivered_twice_once_and_the_first_event_of_an_order(
    app: FastAPI, bus: Any, js: JetStreamContext
) -> None:
    order = bus.order_created(user_id=uuid.uuid4(), price="10.00")
    republished = order.model_copy(update={"ticket": order.ticket.model_copy(update={"price": order.ticket.price * 2})})
    other = bus.order_created(user_id=uuid.uuid4())
    event_id = await bus.publish(order)
    await bus.publish(republished)  # the same order under another event id (and, wrongly, another price)
    await js.publish(  # the first event again: same event id, past JetStream's deduplication
        "order.created",
        order.model_dump_json(by_alias=True).encode(),
        headers={"ce-id": str(event_id), "Nats-Msg-Id": str(uuid.uuid4())},
    )
    await bus.publish(other)
    listener = Recording(app)

    outcomes = await runner(app, js, listener).process_batch(await delivered(js, "order.created", 4))

    assert outcomes == ["ok", "ok", "duplicate", "ok"]
    assert listener.calls == [("batch", 3)]
    copy = await bus.order_copy(order.id)
    assert copy is not None
    assert (copy.user_id, copy.price) == (order.user_id, order.ticket.price)
    assert await bus.order_copy(other.id) is not None


async def test_a_batch_of_order_created_leaves_existing_copies_as_they_are(
    app: FastAPI, bus: Any, js: JetStreamContext
) -> None:
    cancelled = bus.order_created(user_id=uuid.uuid4())
    fresh = bus.order_created(user_id=uuid.uuid4())
    await bus.publish(cancelled)
    first = runner(app, js, OrderCreatedListener(app.state.order_copy_waits))
    assert await first.process_batch(await delivered(js, "order.created", 1)) == ["ok"]
    await bus.publish(OrderCancelled(id=cancelled.id, version=1, ticket=TicketRef(id=cancelled.ticket.id)))
    cancel = runner(app, js, OrderCancelledListener(app.state.stripe))
    assert await cancel.process_batch(await delivered(js, "order.cancelled", 1)) == ["ok"]
    await bus.publish(cancelled)  # republished under a new event id, past the inbox
    await bus.publish(fresh)

    messages = await delivered(js, "order.created", 3)
    outcomes = await runner(app, js, Recording(app)).process_batch(messages[1:])

    assert outcomes == ["ok", "ok"]
    copy = await bus.order_copy(cancelled.id)
    assert copy is not None
    assert (copy.status, copy.version) == (OrderStatus.CANCELLED, 1)
    assert await bus.order_copy(fresh.id) is not None


async def test_a_batch_with_an_event_ahead_of_its_copy_is_replayed_one_by_one_and_only_that_event_waits(
    app: FastAPI, bus: Any, js: JetStreamContext
) -> None:
    orders = [bus.order_created(user_id=uuid.uuid4()) for _ in range(3)]
    for order in orders:
        await bus.publish(order)
    copies = runner(app, js, OrderCreatedListener(app.state.order_copy_waits))
    assert await copies.process_batch(await delivered(js, "order.created", 3)) == ["ok"] * 3
    unknown = uuid.uuid4()
    for order_id, version in ((orders[0].id, 1), (unknown, 1), (orders[1].id, 2), (orders[2].id, 1)):
        await bus.publish(OrderCancelled(id=order_id, version=version, ticket=TicketRef(id=uuid.uuid4())))

    outcomes = await runner(app, js, OrderCancelledListener(app.state.stripe)).process_batch(
        await delivered(js, "order.cancelled", 4)
    )

    assert outcomes == ["ok", "not_yet", "not_yet", "ok"]
    states = [await bus.order_copy(order.id) for order in orders]
    assert [(c.status, c.version) for c in states if c is not None] == [
        (OrderStatus.CANCELLED, 1),
        (OrderStatus.CREATED, 0),  # version 2 is ahead of it: told "not yet", redelivered later
        (OrderStatus.CANCELLED, 1),
    ]
    assert await bus.order_copy(unknown) is None
    assert app.state.metrics.events_handled.labels("order.cancelled", "not_yet")._value.get() == 2
