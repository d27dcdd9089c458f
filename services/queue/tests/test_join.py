"""Joining an event's waiting room, and asking for one's place in it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from nats.js import JetStreamContext
from queue_testing import Buyer, Queue, running_queue

from ticketing_common.config import ServiceSettings
from ticketing_common.events import EventCreated

BEFORE_THE_DRAW = {
    "state": "waiting",
    "position": None,
    "ahead": None,
    "estimatedWaitSeconds": None,
    "admittedUntil": None,
}


async def test_a_buyer_who_joins_before_the_draw_waits_without_a_position(queue: Queue) -> None:
    event = await queue.add_event()
    buyer = Buyer.new()

    joined = await queue.join(event.id, buyer)

    assert joined.status_code == 201
    assert joined.json() == BEFORE_THE_DRAW
    assert await queue.place(event.id, buyer) == BEFORE_THE_DRAW
    [entrant] = await queue.entrants(event.id)
    assert (entrant.user_id, entrant.position, entrant.admitted_until) == (buyer.id, None, None)


async def test_joining_again_is_harmless_one_row_and_the_same_answer(queue: Queue) -> None:
    event = await queue.add_event()
    buyer = Buyer.new()

    answers = [await queue.join(event.id, buyer) for _ in range(4)]
    concurrent = await asyncio.gather(*(queue.join(event.id, buyer) for _ in range(4)))

    assert [a.status_code for a in answers] == [201, 200, 200, 200]
    assert [a.status_code for a in concurrent] == [200] * 4
    assert {str(a.json()) for a in [*answers, *concurrent]} == {str(BEFORE_THE_DRAW)}
    assert [e.user_id for e in await queue.entrants(event.id)] == [buyer.id]


async def test_concurrent_first_joins_of_one_buyer_make_one_entrant(queue: Queue) -> None:
    event = await queue.add_event()
    buyer = Buyer.new()

    answers = await asyncio.gather(*(queue.join(event.id, buyer) for _ in range(6)))

    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len(await queue.entrants(event.id)) == 1


async def test_a_buyer_who_has_not_joined_gets_404(queue: Queue) -> None:
    event = await queue.add_event()
    await queue.join(event.id, Buyer.new())

    response = await queue.client.get(f"/api/queue/{event.id}", headers=Buyer.new().headers)

    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "You have not joined this event's queue"}]}


async def test_signed_out_callers_get_401_for_joining_and_for_their_place(queue: Queue) -> None:
    event = await queue.add_event()

    for response in (
        await queue.client.post(f"/api/queue/{event.id}"),
        await queue.client.get(f"/api/queue/{event.id}"),
        await queue.client.post(f"/api/queue/{event.id}", headers={"Cookie": "session=forged.token.here"}),
    ):
        assert response.status_code == 401
        assert response.json() == {"errors": [{"message": "Not authorized"}]}
    assert await queue.entrants(event.id) == []


@pytest.mark.parametrize("path", ["not-a-uuid", "123", f"{uuid.uuid4()}x"])
async def test_a_malformed_event_id_is_404(queue: Queue, path: str) -> None:
    buyer = Buyer.new()

    assert (await queue.client.post(f"/api/queue/{path}", headers=buyer.headers)).status_code == 404
    assert (await queue.client.get(f"/api/queue/{path}", headers=buyer.headers)).status_code == 404
    assert (await queue.client.get(f"/api/queue/{path}/draw")).status_code == 404


async def test_joining_an_unknown_event_is_404_after_a_short_wait_for_its_copy(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, queue_event_wait_seconds=0.5) as queue:
        started = asyncio.get_running_loop().time()
        response = await queue.join(uuid.uuid4(), Buyer.new())
        waited = asyncio.get_running_loop().time() - started

    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Event not found"}]}
    assert 0.5 <= waited < 2.0


async def test_a_join_waits_for_the_copy_of_an_event_created_a_moment_ago(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, queue_event_wait_seconds=5) as queue:
        buyer = Buyer.new()
        event_id = uuid.uuid4()
        joining = asyncio.create_task(queue.join(event_id, buyer))
        await asyncio.sleep(0.3)  # the join is waiting; now tickets' event.created arrives
        await queue.publish(
            EventCreated(
                id=event_id,
                name="Just created",
                venue="Hall",
                starts_at=datetime.now(UTC) + timedelta(days=30),
                on_sale_at=datetime.now(UTC) + timedelta(hours=1),
                max_per_buyer=2,
                waiting_room=True,
                user_id=uuid.uuid4(),
                version=0,
            )
        )
        response = await joining

    assert response.status_code == 201
    assert response.json()["state"] == "waiting"


async def test_an_event_without_a_waiting_room_admits_every_joiner_at_once_in_join_order(queue: Queue) -> None:
    event = await queue.add_event(on_sale_at=datetime.now(UTC) - timedelta(minutes=1), waiting_room=False)
    first, second = Buyer.new(), Buyer.new()
    before = datetime.now(UTC)

    answers = [await queue.join(event.id, first), await queue.join(event.id, second)]

    assert [a.status_code for a in answers] == [201, 201]
    bodies = [a.json() for a in answers]
    assert [(b["state"], b["position"], b["ahead"], b["estimatedWaitSeconds"]) for b in bodies] == [
        ("admitted", 1, None, None),
        ("admitted", 2, None, None),
    ]
    admitted_until = datetime.fromisoformat(bodies[0]["admittedUntil"])
    assert bodies[0]["admittedUntil"].endswith("Z")
    assert timedelta(seconds=599) < admitted_until - before < timedelta(seconds=602)
    assert await queue.outbox("queue.admitted") == [
        {"eventId": str(event.id), "userId": str(first.id), "position": 1, "admittedUntil": bodies[0]["admittedUntil"]},
        {
            "eventId": str(event.id),
            "userId": str(second.id),
            "position": 2,
            "admittedUntil": bodies[1]["admittedUntil"],
        },
    ]
    no_draw = await queue.client.get(f"/api/queue/{event.id}/draw")
    assert no_draw.status_code == 404
    assert no_draw.json() == {"errors": [{"message": "This event has no waiting room"}]}


async def test_the_draw_of_an_unknown_event_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/queue/{uuid.uuid4()}/draw")

    assert response.status_code == 404
    assert response.json() == {"errors": [{"message": "Event not found"}]}


async def test_no_route_offers_more_than_the_queue_api(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()

    assert sorted(spec["paths"]) == ["/api/queue/{event_id}", "/api/queue/{event_id}/draw"]
    assert sorted(spec["paths"]["/api/queue/{event_id}"]) == ["get", "post"]
