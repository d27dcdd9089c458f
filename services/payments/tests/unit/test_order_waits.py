"""Payments waiting for their order's copy, on their own (a stand-in for the NATS connection, no server): woken
by any replica's copy, re-checking meanwhile, bounded in number and in time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ticketing_common import copy_waits
from ticketing_common.errors import ServiceUnavailableError
from ticketing_payments.order_waits import ORDER_COPIED, TOO_MANY_WAITING, OrderCopyWaits, OrderNotCopiedYet

pytestmark = pytest.mark.unit


@dataclass
class Message:
    subject: str
    data: bytes


@dataclass
class Bus:
    """Plays core NATS: every connection that subscribed hears every message, its sender's included."""

    subscribers: list[Callable[[Any], Awaitable[None]]] = field(default_factory=list)

    async def subscribe(self, subject: str, cb: Callable[[Any], Awaitable[None]]) -> None:
        assert subject == ORDER_COPIED
        self.subscribers.append(cb)

    async def flush(self) -> None:
        pass

    async def publish(self, subject: str, data: bytes) -> None:
        for deliver in self.subscribers:
            await deliver(Message(subject, data))


class Copies:
    """The order copies the attempts look for, and how many times they looked."""

    def __init__(self) -> None:
        self.stored: set[uuid.UUID] = set()
        self.tries = 0

    def attempt(self, order_id: uuid.UUID) -> Callable[[], Awaitable[str]]:
        async def charge() -> str:
            self.tries += 1
            if order_id not in self.stored:
                raise OrderNotCopiedYet()
            return "paid"

        return charge


@pytest.fixture
def no_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a wake-up can end a wait early."""
    monkeypatch.setattr(copy_waits, "RECHECK_SECONDS", 60.0)


async def wait_for(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0)


async def test_an_order_copied_already_is_charged_at_once_without_waiting() -> None:
    waits, copies, order_id = OrderCopyWaits(limit=1), Copies(), uuid.uuid4()
    copies.stored.add(order_id)
    assert await waits.until_copied(order_id, copies.attempt(order_id), seconds=30) == "paid"
    assert (copies.tries, waits.waiting) == (1, 0)


async def test_without_a_wait_an_order_not_copied_yet_is_not_found_at_once() -> None:
    waits, copies, order_id = OrderCopyWaits(limit=1), Copies(), uuid.uuid4()
    with pytest.raises(OrderNotCopiedYet):
        await waits.until_copied(order_id, copies.attempt(order_id), seconds=0)
    assert copies.tries == 1


async def test_a_copy_made_by_another_replica_wakes_the_waiting_payment(no_recheck: None) -> None:
    bus, order_id, copies = Bus(), uuid.uuid4(), Copies()
    here, there = OrderCopyWaits(limit=10), OrderCopyWaits(limit=10)
    await here.attach(bus)  # type: ignore[arg-type]
    await there.attach(bus)  # type: ignore[arg-type]
    paying = asyncio.create_task(here.until_copied(order_id, copies.attempt(order_id), seconds=30))
    await wait_for(lambda: here.waiting == 1)

    copies.stored.add(order_id)
    await there.copied(order_id)

    assert await asyncio.wait_for(paying, 1) == "paid"
    assert here.waiting == 0


async def test_a_copy_of_another_order_does_not_end_the_wait(no_recheck: None) -> None:
    bus, order_id, copies = Bus(), uuid.uuid4(), Copies()
    waits = OrderCopyWaits(limit=10)
    await waits.attach(bus)  # type: ignore[arg-type]
    paying = asyncio.create_task(waits.until_copied(order_id, copies.attempt(order_id), seconds=30))
    await wait_for(lambda: waits.waiting == 1)
    tries = copies.tries

    await waits.copied(uuid.uuid4())
    await asyncio.sleep(0.01)

    assert (paying.done(), copies.tries) == (False, tries)
    paying.cancel()
    await asyncio.gather(paying, return_exceptions=True)
    assert waits.waiting == 0


async def test_a_lost_wake_up_costs_at_most_one_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_waits, "RECHECK_SECONDS", 0.01)
    waits, copies, order_id = OrderCopyWaits(limit=1), Copies(), uuid.uuid4()  # hears no replica at all
    paying = asyncio.create_task(waits.until_copied(order_id, copies.attempt(order_id), seconds=30))
    await wait_for(lambda: waits.waiting == 1)

    copies.stored.add(order_id)

    assert await asyncio.wait_for(paying, 1) == "paid"


async def test_the_wait_ends_with_not_found_once_its_time_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_waits, "RECHECK_SECONDS", 0.01)
    waits, copies, order_id = OrderCopyWaits(limit=1), Copies(), uuid.uuid4()
    with pytest.raises(OrderNotCopiedYet):
        await waits.until_copied(order_id, copies.attempt(order_id), seconds=0.05)
    assert copies.tries >= 3  # the first try, the one after registering, and re-checks
    assert waits.waiting == 0


async def test_beyond_the_limit_a_payment_is_told_to_retry_shortly(no_recheck: None) -> None:
    waits, copies = OrderCopyWaits(limit=2), Copies()
    orders = [uuid.uuid4() for _ in range(3)]
    waiting = [asyncio.create_task(waits.until_copied(o, copies.attempt(o), seconds=30)) for o in orders[:2]]
    await wait_for(lambda: waits.waiting == 2)

    with pytest.raises(ServiceUnavailableError) as refused:
        await waits.until_copied(orders[2], copies.attempt(orders[2]), seconds=30)

    assert (refused.value.message, refused.value.headers) == (TOO_MANY_WAITING, {"Retry-After": "1"})
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert waits.waiting == 0


async def test_a_replica_not_yet_on_nats_announces_nothing_and_fails_nothing() -> None:
    waits = OrderCopyWaits(limit=1)
    assert not waits.hears_other_replicas
    await waits.copied(uuid.uuid4())
