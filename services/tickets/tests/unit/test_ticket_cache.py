"""The read model's rules on their own (no I/O): newest version wins in any order, nothing is served while the
event feed may be missing events, a read from before a drop is not kept, entries age out and make room."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from ticketing_common.db import OutboxMessage
from ticketing_common.events import Event, OrderCancelled, TicketCreated, TicketUpdated
from ticketing_common.events.catalogue import TicketRef
from ticketing_tickets.cache import TicketCache, render
from ticketing_tickets.schemas import TicketOut

pytestmark = pytest.mark.unit


class Feed:
    """Plays the NATS connection: connected or not, and how many times it reconnected."""

    def __init__(self) -> None:
        self.connected = True
        self.reconnects = 0

    def __call__(self) -> int | None:
        return self.reconnects if self.connected else None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ticket(ticket_id: uuid.UUID, version: int, title: str | None = None) -> TicketOut:
    return TicketOut(
        id=ticket_id,
        title=title or f"v{version}",
        price=Decimal("10.50"),
        user_id=uuid.UUID(int=1),
        order_id=None,
        version=version,
        event_id=None,
    )


def following(feed: Feed | None = None, **kwargs: float) -> TicketCache:
    cache = TicketCache(max_entries=int(kwargs.pop("max_entries", 100)), ttl_seconds=kwargs.pop("ttl", 60.0), **kwargs)  # type: ignore[arg-type]
    cache.follow(feed or Feed())
    return cache


def shown_version(cache: TicketCache, ticket_id: uuid.UUID) -> int | None:
    body = cache.get(ticket_id)
    return None if body is None else int(json.loads(body)["version"])


def test_body_is_the_api_json_in_camel_case() -> None:
    tid = uuid.uuid4()
    assert json.loads(render(ticket(tid, 3))) == {
        "id": str(tid),
        "title": "v3",
        "price": 10.5,
        "userId": str(uuid.UUID(int=1)),
        "orderId": None,
        "version": 3,
        "eventId": None,
    }


def test_serves_nothing_before_following_the_events() -> None:
    cache = TicketCache(max_entries=10, ttl_seconds=60)
    tid = uuid.uuid4()
    cache.apply(ticket(tid, 0))
    cache.offer(ticket(tid, 0), epoch=cache.epoch)
    assert cache.get(tid) is None
    assert len(cache) == 0


def test_a_newer_event_replaces_an_older_read_and_an_older_read_never_replaces_a_newer_event() -> None:
    cache = following()
    tid = uuid.uuid4()
    cache.offer(ticket(tid, 1), epoch=cache.epoch)
    cache.apply(ticket(tid, 3))
    assert shown_version(cache, tid) == 3
    cache.offer(ticket(tid, 2), epoch=cache.epoch)  # a read that started before version 3 committed
    cache.apply(ticket(tid, 1))  # a late, duplicated event
    assert shown_version(cache, tid) == 3


def test_a_read_returns_what_it_read_even_when_the_cache_holds_newer() -> None:
    cache = following()
    tid = uuid.uuid4()
    cache.apply(ticket(tid, 5))
    assert json.loads(cache.offer(ticket(tid, 4), epoch=cache.epoch))["version"] == 4
    assert shown_version(cache, tid) == 5


def test_nothing_is_served_while_disconnected_and_everything_is_forgotten() -> None:
    feed = Feed()
    cache = following(feed)
    tid = uuid.uuid4()
    cache.apply(ticket(tid, 0))
    feed.connected = False
    assert cache.get(tid) is None
    cache.apply(ticket(tid, 1))  # would be ignored: the feed may be missing events right now
    assert len(cache) == 0
    feed.connected = True
    assert cache.get(tid) is None  # back, but the entry is gone: read again


def test_a_reconnection_between_two_looks_drops_everything() -> None:
    feed = Feed()
    cache = following(feed)
    tid = uuid.uuid4()
    cache.apply(ticket(tid, 0))
    feed.reconnects += 1  # disconnected and reconnected without anyone looking: events may have been missed
    assert cache.get(tid) is None
    cache.apply(ticket(tid, 1))  # events after the reconnection are kept again
    assert shown_version(cache, tid) == 1


def test_a_read_that_started_before_a_drop_is_not_kept() -> None:
    feed = Feed()
    cache = following(feed)
    tid = uuid.uuid4()
    epoch = cache.epoch  # the read starts
    feed.reconnects += 1  # the feed restarted meanwhile: the row read may predate a missed event
    body = cache.offer(ticket(tid, 0), epoch=epoch)
    assert json.loads(body)["version"] == 0
    assert cache.get(tid) is None
    cache.offer(ticket(tid, 0), epoch=cache.epoch)  # a read that started after it is kept
    assert shown_version(cache, tid) == 0


def test_entries_are_read_again_after_the_ttl() -> None:
    clock = Clock()
    cache = following(ttl=30.0, clock=clock)
    tid = uuid.uuid4()
    cache.apply(ticket(tid, 0))
    clock.now += 29
    assert shown_version(cache, tid) == 0
    clock.now += 2
    assert cache.get(tid) is None


def test_the_least_recently_shown_ticket_makes_room() -> None:
    cache = following(max_entries=2)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.apply(ticket(first, 0))
    cache.apply(ticket(second, 0))
    assert cache.get(first) is not None  # first is now the most recently used
    cache.apply(ticket(third, 0))
    assert [cache.get(t) is not None for t in (first, second, third)] == [True, False, True]


def test_the_tickets_a_commit_of_this_process_published_are_applied_at_once() -> None:
    cache = following()
    tid, other = uuid.uuid4(), uuid.uuid4()
    created = TicketCreated(id=tid, title="v0", price=Decimal(1), user_id=uuid.UUID(int=1), version=0)
    updated = TicketUpdated(id=tid, title="v1", price=Decimal(2), user_id=uuid.UUID(int=1), order_id=None, version=1)
    order = OrderCancelled(id=uuid.uuid4(), version=1, ticket=TicketRef(id=other))

    def message(event: Event | None) -> OutboxMessage:
        return OutboxMessage(event_id=uuid.uuid4(), subject="s", payload="{}", headers={}, event=event)

    cache.apply_committed([message(created), message(order), message(updated), message(None)])
    assert shown_version(cache, tid) == 1
    assert cache.get(other) is None
