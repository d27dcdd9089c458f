"""POST /api/payments for an order whose copy has not arrived yet waits for it (PAYMENT_ORDER_WAIT_SECONDS), on
whichever replica the copy is stored, without holding a database connection; never for another buyer's order."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ticketing_common import copy_waits
from ticketing_common.events import Listener
from ticketing_common.testing import http_client, running, signin, wait_until
from ticketing_payments import listeners
from ticketing_payments.config import Settings
from ticketing_payments.main import create_app
from ticketing_payments.order_waits import TOO_MANY_WAITING, OrderCopyWaits

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

NOT_FOUND = {"errors": [{"message": "Order not found"}]}

Replica = Callable[..., contextlib.AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
def replica(settings: Settings) -> Replica:
    """Another replica of the service on the same database and bus, with some settings changed."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        app = create_app(settings.model_copy(update=overrides))
        async with running(app), http_client(app) as client:
            await wait_until(_hears_other_replicas(app))
            yield app, client

    return start


def _hears_other_replicas(app: FastAPI) -> Callable[[], Any]:
    async def ready() -> bool:
        return bool(app.state.order_copy_waits.hears_other_replicas)

    return ready


@pytest.fixture
def only_wakes_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """No periodic re-check within a test's time: only a wake-up can end a wait early."""
    monkeypatch.setattr(copy_waits, "RECHECK_SECONDS", 60.0)


def pay(client: httpx.AsyncClient, order_id: uuid.UUID, card: str = "tok_visa") -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(client.post("/api/payments", json={"orderId": str(order_id), "token": card}))


async def waiting(app: FastAPI, count: int) -> None:
    waits: OrderCopyWaits = app.state.order_copy_waits

    async def ready() -> bool:
        return waits.waiting == count

    await wait_until(ready)


async def test_waits_for_the_order_copy_and_charges_once_it_arrives(
    app: FastAPI, client: httpx.AsyncClient, bus: Any, stripe_fake: Any, only_wakes_count: None
) -> None:
    user = signin(client)
    order = bus.order_created(user_id=user.id)

    request = pay(client, order.id)
    await waiting(app, 1)
    await asyncio.sleep(0.2)
    assert not request.done()
    await bus.publish(order)
    response = await asyncio.wait_for(request, 10)

    assert response.status_code == 201
    assert response.json()["orderId"] == str(order.id)
    assert len(await stripe_fake.charges()) == 1
    assert app.state.order_copy_waits.waiting == 0


async def test_returns_404_after_the_wait_when_the_order_never_arrives(replica: Replica, stripe_fake: Any) -> None:
    async with replica(payment_order_wait_seconds=0.5) as (_, client):
        signin(client)
        started = time.monotonic()

        response = await pay(client, uuid.uuid4())

        assert response.status_code == 404
        assert response.json() == NOT_FOUND
        assert time.monotonic() - started >= 0.5
    assert await stripe_fake.requests() == []


async def test_returns_404_at_once_for_another_users_order(
    app: FastAPI, client: httpx.AsyncClient, bus: Any, stripe_fake: Any, settings: Settings
) -> None:
    order = await bus.order(user_id=uuid.uuid4())
    signin(client)
    started = time.monotonic()

    response = await pay(client, order.id)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert time.monotonic() - started < settings.payment_order_wait_seconds / 2
    assert await stripe_fake.requests() == []


async def test_a_copy_stored_by_another_replica_wakes_the_waiting_request(
    app: FastAPI,
    bus: Any,
    stripe_fake: Any,
    replica: Replica,
    monkeypatch: pytest.MonkeyPatch,
    only_wakes_count: None,
) -> None:
    # This replica consumes no order.created at all: the copy can only be stored by the fixture's app.
    def without_order_created(app: FastAPI) -> Sequence[Listener[Any]]:
        found = listeners.listeners(app)
        return [listener for listener in found if not isinstance(listener, listeners.OrderCreatedListener)]

    monkeypatch.setattr("ticketing_payments.main.listeners", without_order_created)
    async with replica(payment_order_wait_seconds=30) as (waiting_app, client):
        user = signin(client)
        order = bus.order_created(user_id=user.id)
        request = pay(client, order.id)
        await waiting(waiting_app, 1)

        await bus.publish(order)
        response = await asyncio.wait_for(request, 10)

        assert response.status_code == 201
        assert len(await stripe_fake.charges()) == 1


async def test_answers_503_when_too_many_payments_are_waiting(replica: Replica, stripe_fake: Any) -> None:
    async with replica(payment_order_wait_seconds=30, payment_order_waiters=2) as (app, client):
        signin(client)
        first, second = pay(client, uuid.uuid4()), pay(client, uuid.uuid4())
        await waiting(app, 2)

        over = await pay(client, uuid.uuid4())

        assert over.status_code == 503
        assert over.json() == {"errors": [{"message": TOO_MANY_WAITING}]}
        assert over.headers["Retry-After"] == "1"
        assert app.state.order_copy_waits.waiting == 2
        first.cancel()
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
    assert await stripe_fake.requests() == []


async def test_a_waiting_payment_holds_no_database_connection(
    bus: Any, replica: Replica, stripe_fake: Any, only_wakes_count: None
) -> None:
    async with replica(database_pool_size=1, payment_order_wait_seconds=30) as (app, client):
        user = signin(client)
        order = await bus.order(user_id=user.id)
        waiters = [pay(client, uuid.uuid4()) for _ in range(3)]
        await waiting(app, 3)

        paid = await asyncio.wait_for(pay(client, order.id), 10)

        assert paid.status_code == 201  # through the one pooled connection, while all three still wait
        assert app.state.order_copy_waits.waiting == 3
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
