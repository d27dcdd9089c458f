"""POST /api/orders is rate limited per buyer (ORDER_ATTEMPTS_PER_SECOND, ORDER_ATTEMPTS_BURST, per replica):
beyond, 429 with Retry-After, before anything is read or placed; other buyers are not affected."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from ticketing_common.testing import UNREACHABLE_JWKS_URL, signin
from ticketing_orders.attempts import TOO_MANY_ATTEMPTS
from ticketing_orders.config import Settings

if TYPE_CHECKING:
    from conftest import Harness, Replica

TOO_MANY = {"errors": [{"message": TOO_MANY_ATTEMPTS}]}


async def test_returns_429_with_retry_after_when_a_buyer_tries_beyond_the_burst(replica: Replica, bus: Harness) -> None:
    ticket = await bus.add_ticket()
    async with replica(order_attempts_per_second=0.5, order_attempts_burst=3) as (_, client):
        signin(client)
        unknown = {"ticketId": str(uuid.uuid4())}
        assert [(await client.post("/api/orders", json=unknown)).status_code for _ in range(3)] == [404] * 3

        response = await client.post("/api/orders", json={"ticketId": str(ticket.id)})

        assert response.status_code == 429
        assert response.json() == TOO_MANY
        assert int(response.headers["Retry-After"]) in (1, 2)  # a token every 2 s, one almost due
        assert await bus.count_orders() == 0
        signin(client)  # another buyer still has all their attempts
        assert (await client.post("/api/orders", json={"ticketId": str(ticket.id)})).status_code == 201


async def test_a_buyer_may_try_again_once_an_attempt_has_refilled(replica: Replica, bus: Harness) -> None:
    ticket = await bus.add_ticket()
    async with replica(order_attempts_per_second=10, order_attempts_burst=1) as (_, client):
        signin(client)
        body = {"ticketId": str(ticket.id)}
        assert (await client.post("/api/orders", json={"ticketId": str(uuid.uuid4())})).status_code == 404
        refused = await client.post("/api/orders", json=body)
        assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")

        await asyncio.sleep(0.15)

        assert (await client.post("/api/orders", json=body)).status_code == 201


def test_the_rate_the_burst_and_the_waits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWKS_URL", UNREACHABLE_JWKS_URL)
    defaults = Settings()
    assert (defaults.order_attempts_per_second, defaults.order_attempts_burst) == (5, 10)
    assert (defaults.order_admission_wait_seconds, defaults.order_admission_waiters) == (3, 1000)
    monkeypatch.setenv("ORDER_ATTEMPTS_PER_SECOND", "2.5")
    monkeypatch.setenv("ORDER_ATTEMPTS_BURST", "4")
    monkeypatch.setenv("ORDER_ADMISSION_WAIT_SECONDS", "0")
    monkeypatch.setenv("ORDER_ADMISSION_WAITERS", "7")
    settings = Settings()
    assert (settings.order_attempts_per_second, settings.order_attempts_burst) == (2.5, 4)
    assert (settings.order_admission_wait_seconds, settings.order_admission_waiters) == (0, 7)
    monkeypatch.setenv("ORDER_ATTEMPTS_PER_SECOND", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        Settings()
