"""Joins are limited per user (QUEUE_JOIN_LIMIT per QUEUE_JOIN_WINDOW_SECONDS, repeats included, on every
replica together): beyond, 429 with Retry-After; reading one's place is not limited."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from queue_testing import Buyer, running_queue

from ticketing_common.config import ServiceSettings
from ticketing_common.testing import http_client, running
from ticketing_queue.main import create_app


async def test_joins_beyond_the_limit_get_429_with_retry_after_and_other_users_are_not_affected(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, queue_join_limit=3, queue_join_window_seconds=60) as queue:
        first, second = await queue.add_event(), await queue.add_event()
        buyer, other = Buyer.new(), Buyer.new()

        allowed = [
            await queue.join(first.id, buyer),
            await queue.join(first.id, buyer),
            await queue.join(second.id, buyer),
        ]
        refused = await queue.join(second.id, buyer)
        others = await queue.join(first.id, other)
        place = await queue.client.get(f"/api/queue/{first.id}", headers=buyer.headers)

    assert [a.status_code for a in allowed] == [201, 200, 201]  # a repeat counts too
    assert refused.status_code == 429
    assert refused.json() == {"errors": [{"message": "Too many attempts to join a queue: retry later"}]}
    assert 58 <= int(refused.headers["Retry-After"]) <= 60
    assert others.status_code == 201
    assert place.status_code == 200


async def test_a_new_window_allows_joins_again(settings: ServiceSettings, js: JetStreamContext) -> None:
    async with running_queue(settings, js, queue_join_limit=1, queue_join_window_seconds=1) as queue:
        event = await queue.add_event()
        buyer = Buyer.new()

        first = await queue.join(event.id, buyer)
        refused = await queue.join(event.id, buyer)
        await asyncio.sleep(1.1)
        later = await queue.join(event.id, buyer)

    assert (first.status_code, refused.status_code, later.status_code) == (201, 429, 200)
    assert refused.headers["Retry-After"] == "1"


async def test_the_limit_holds_across_replicas(settings: ServiceSettings, js: JetStreamContext) -> None:
    limits = {"queue_join_limit": 4, "queue_join_window_seconds": 60}
    async with (
        running_queue(settings, js, **limits) as queue,
        running(create_app(settings.model_copy(update=limits))) as second,
        http_client(second) as other_client,
    ):
        event = await queue.add_event()
        buyer = Buyer.new()
        answers = await asyncio.gather(
            *(queue.join(event.id, buyer) for _ in range(3)),
            *(other_client.post(f"/api/queue/{event.id}", headers=buyer.headers) for _ in range(3)),
        )

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201, 429, 429]
