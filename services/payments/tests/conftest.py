"""The payments service under test, against the session's real PostgreSQL and NATS and a real fake-Stripe process
(the official ``stripe`` library talks to it over HTTP)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext

from ticketing_common.db import cloudevent_headers
from ticketing_common.embedded import free_port, wait_for_port
from ticketing_common.events import Event, OrderCancelled, OrderCreated, OrderStatus, UserCreated, UserUpdated
from ticketing_common.events.catalogue import OrderTicket, TicketRef, encode
from ticketing_common.testing import ServiceUnderTest, wait_until
from ticketing_payments.config import Settings
from ticketing_payments.main import MIGRATIONS_DIR, create_app
from ticketing_payments.queries import PAYMENT_COLUMNS, Payment

STRIPE_TEST_KEY = "sk_test_payments_service_tests"


@dataclass
class FakeStripe:
    """The fake-Stripe process of this test session, seen from the tests (its control and read endpoints)."""

    url: str
    http: httpx.AsyncClient

    async def reset(self) -> None:
        (await self.http.post("/_fake/reset")).raise_for_status()

    async def outage(self, count: int, *, phase: str = "before", status: int = 500) -> None:
        """The next ``count`` requests fail: ``before`` executing, or ``after`` (the charge happens, the answer is
        lost)."""
        response = await self.http.post("/_fake/outage", json={"count": count, "phase": phase, "status": status})
        response.raise_for_status()

    async def delay(self, seconds: float) -> None:
        (await self.http.post("/_fake/delay", json={"seconds": seconds})).raise_for_status()

    async def requests(self) -> list[dict[str, Any]]:
        """The API requests the fake received, oldest first."""
        entries: list[dict[str, Any]] = (await self.http.get("/_fake/requests")).json()
        return [e for e in entries if e["method"] == "POST"]

    async def charges(self, *, status: str | None = None) -> list[dict[str, Any]]:
        response = await self.http.get(
            "/v1/charges", params={"limit": "100"}, headers={"Authorization": f"Bearer {STRIPE_TEST_KEY}"}
        )
        data: list[dict[str, Any]] = response.json()["data"]
        return [c for c in data if status is None or c["status"] == status]

    async def payment_intent(self, intent_id: str) -> dict[str, Any]:
        response = await self.http.get(
            f"/v1/payment_intents/{intent_id}", headers={"Authorization": f"Bearer {STRIPE_TEST_KEY}"}
        )
        response.raise_for_status()
        intent: dict[str, Any] = response.json()
        return intent


@pytest.fixture(scope="session")
def fake_stripe_url() -> Iterator[str]:
    """`ticketing_fake_stripe` as its own process on a free port, for the whole test session."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketing_fake_stripe"],
        env={**os.environ, "PORT": str(port), "HOST": "127.0.0.1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, 30, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def stripe_fake(fake_stripe_url: str) -> AsyncIterator[FakeStripe]:
    """The fake, emptied for this test."""
    async with httpx.AsyncClient(base_url=fake_stripe_url, timeout=10) as http:
        fake = FakeStripe(fake_stripe_url, http)
        await fake.reset()
        yield fake


@pytest.fixture
def service(stripe_fake: FakeStripe) -> ServiceUnderTest:
    return ServiceUnderTest(
        Settings,
        create_app,
        MIGRATIONS_DIR,
        overrides={"stripe_key": STRIPE_TEST_KEY, "stripe_api_base": stripe_fake.url},
    )


@dataclass(frozen=True)
class OrderCopy:
    """The service's copy of an order, as the tests read it back."""

    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    price: Decimal
    expires_at: datetime
    version: int
    charge_attempt: int


@dataclass(frozen=True)
class UserCopy:
    id: uuid.UUID
    email: str
    version: int


@dataclass
class Bus:
    """Publishes other services' events as their relays would, and reads back (or waits for) what this service
    stored."""

    js: JetStreamContext
    app: FastAPI

    async def publish(self, event: Event, *, event_id: uuid.UUID | None = None) -> uuid.UUID:
        eid = event_id or uuid.uuid4()
        headers = cloudevent_headers(event_id=eid, subject=event.subject, source="test", time=datetime.now(UTC))
        await self.js.publish(event.subject, encode(event), headers=headers)
        return eid

    @staticmethod
    def order_created(
        *,
        user_id: uuid.UUID,
        price: str | Decimal = "19.99",
        expires_in: timedelta = timedelta(minutes=15),
        order_id: uuid.UUID | None = None,
    ) -> OrderCreated:
        """An ``order.created`` as the orders service publishes it."""
        return OrderCreated(
            id=order_id or uuid.uuid4(),
            status=OrderStatus.CREATED,
            user_id=user_id,
            expires_at=datetime.now(UTC) + expires_in,
            version=0,
            ticket=OrderTicket(id=uuid.uuid4(), price=Decimal(price)),
        )

    async def order(
        self,
        *,
        user_id: uuid.UUID,
        price: str | Decimal = "19.99",
        expires_in: timedelta = timedelta(minutes=15),
    ) -> OrderCreated:
        """An order of ``user_id`` created in the orders service, once payments has its copy."""
        event = self.order_created(user_id=user_id, price=price, expires_in=expires_in)
        await self.publish(event)
        await self.wait_for_order(event.id)
        return event

    async def cancel(self, order: OrderCreated, *, version: int = 1, wait: bool = True) -> OrderCancelled:
        event = OrderCancelled(id=order.id, version=version, ticket=TicketRef(id=order.ticket.id))
        await self.publish(event)
        if wait:
            await self.wait_for_order(order.id, status=OrderStatus.CANCELLED, version=version)
        return event

    async def user(self, user_id: uuid.UUID, email: str, *, version: int = 0) -> None:
        event: Event = (
            UserCreated(id=user_id, email=email, version=0)
            if version == 0
            else UserUpdated(id=user_id, email=email, version=version)
        )
        await self.publish(event)

    async def order_copy(self, order_id: uuid.UUID) -> OrderCopy | None:
        row = await self.app.state.db.pool.fetchrow(
            "SELECT id, user_id, status, price, expires_at, version, charge_attempt FROM orders WHERE id = $1", order_id
        )
        return OrderCopy(**row) if row is not None else None

    async def user_copy(self, user_id: uuid.UUID) -> UserCopy | None:
        row = await self.app.state.db.pool.fetchrow("SELECT id, email, version FROM users WHERE id = $1", user_id)
        return UserCopy(**row) if row is not None else None

    async def payment(
        self, *, payment_id: uuid.UUID | None = None, order_id: uuid.UUID | None = None
    ) -> Payment | None:
        """The payment with this id, or of this order."""
        column, value = ("id", payment_id) if payment_id is not None else ("order_id", order_id)
        row = await self.app.state.db.pool.fetchrow(
            f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE {column} = $1",  # noqa: S608 (constant names)
            value,
        )
        return Payment(**row) if row is not None else None

    async def wait_for_order(
        self, order_id: uuid.UUID, *, status: str | None = None, version: int | None = None, timeout: float = 15
    ) -> OrderCopy:
        async def ready() -> OrderCopy | None:
            order = await self.order_copy(order_id)
            if order is None or (status is not None and order.status != status):
                return None
            if version is not None and order.version != version:
                return None
            return order

        return await wait_until(ready, timeout=timeout)

    async def wait_for_user(self, user_id: uuid.UUID, *, version: int, timeout: float = 15) -> UserCopy:
        async def ready() -> UserCopy | None:
            user = await self.user_copy(user_id)
            return user if user is not None and user.version == version else None

        return await wait_until(ready, timeout=timeout)

    async def payments(self) -> int:
        """How many payments are stored."""
        return int(await self.app.state.db.pool.fetchval("SELECT count(*) FROM payments"))


@pytest.fixture
def bus(js: JetStreamContext, app: FastAPI) -> Bus:
    return Bus(js, app)
