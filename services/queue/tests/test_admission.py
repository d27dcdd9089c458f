"""Admission: buyers are let out in position order at QUEUE_ADMIT_PER_SECOND per event, each announced once by
``queue.admitted``, admitted for QUEUE_ADMISSION_SECONDS and then expired; nobody waiting means admitted at once;
two replicas admitting together never admit anyone twice or out of order."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from queue_testing import Buyer, Entrant, in_seconds, running_queue

from ticketing_common.config import ServiceSettings
from ticketing_common.testing import running
from ticketing_queue.main import create_app


def admitted_at(entrant: Entrant, admission_seconds: float) -> datetime:
    assert entrant.admitted_until is not None
    return entrant.admitted_until - timedelta(seconds=admission_seconds)


def assert_admitted_in_position_order_at_most_at(
    entrants: list[Entrant], *, drawn_at: datetime, rate: float, admission_seconds: float
) -> None:
    """The k-th buyer (by position) was admitted in position order, and no sooner than k / rate after the draw
    (the room's bucket is empty at the draw and fills at ``rate``)."""
    by_position = sorted(entrants, key=lambda e: e.position or 0)
    moments = [admitted_at(e, admission_seconds) for e in by_position]
    assert moments == sorted(moments)
    for k, moment in enumerate(moments, start=1):
        assert (moment - drawn_at).total_seconds() >= k / rate - 0.001, f"buyer {k} admitted too soon"


async def test_buyers_are_admitted_in_position_order_at_the_configured_rate(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, queue_admit_per_second=10) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(1))
        await queue.joined(event.id, 30)
        room = await queue.wait_drawn(event.id)
        entrants = await queue.wait_admitted(event.id, 30, timeout=15)
        published = await queue.published("queue.admitted")

    assert room.drawn_at is not None
    assert_admitted_in_position_order_at_most_at(entrants, drawn_at=room.drawn_at, rate=10, admission_seconds=600)
    last = max(admitted_at(e, 600) for e in entrants)
    assert 3.0 <= (last - room.drawn_at).total_seconds() < 4.5  # 30 at 10 per second: three seconds, not much more
    # Each buyer announced once, in position order, with the admission the database holds.
    assert [m.data["position"] for m in published] == list(range(1, 31))
    by_user = {e.user_id: e for e in entrants}
    for message in published:
        entrant = by_user.pop(uuid.UUID(message.data["userId"]))
        assert message.data == {
            "eventId": str(event.id),
            "userId": str(entrant.user_id),
            "position": entrant.position,
            "admittedUntil": entrant.admitted_until.astimezone(UTC).isoformat().replace("+00:00", "Z"),  # type: ignore[union-attr]
        }
    assert by_user == {}


async def test_a_waiting_buyer_sees_who_is_ahead_and_how_long_they_will_take(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, queue_admit_per_second=2) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(0.5))
        buyers = await queue.joined(event.id, 8)
        await queue.wait_drawn(event.id)
        await queue.wait_admitted(event.id, 2)  # one second after the draw
        places = [await queue.place(event.id, buyer) for buyer in buyers]
        room = await queue.room(event.id)

    assert room is not None
    for place in places:
        if place["state"] == "admitted":
            assert place["position"] <= room.admitted_through
            assert (place["ahead"], place["estimatedWaitSeconds"]) == (None, None)
            continue
        assert place["state"] == "waiting"
        ahead = place["position"] - room.admitted_through - 1
        # The cursor may have moved between the places and the room read: never more than a batch.
        assert ahead <= place["ahead"] <= ahead + 2
        assert place["estimatedWaitSeconds"] == -(-place["ahead"] // 2)  # ahead / 2 per second, rounded up
        assert place["admittedUntil"] is None


async def test_when_nobody_is_waiting_a_joiner_is_admitted_at_once(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, queue_admit_per_second=5) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(0.3))
        await queue.wait_drawn(event.id)  # nobody joined before the sale
        await asyncio.sleep(0.3)  # the room has an admission saved up (one every 0.2 s)
        buyer = Buyer.new()

        response = await queue.join(event.id, buyer)

        body = response.json()
        assert response.status_code == 201
        assert (body["state"], body["position"], body["ahead"], body["estimatedWaitSeconds"]) == (
            "admitted",
            1,
            None,
            None,
        )
        [announced] = await queue.outbox("queue.admitted")
        assert announced["userId"] == str(buyer.id)


async def test_a_burst_of_joiners_after_the_draw_is_let_out_at_the_rate_not_all_at_once(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, queue_admit_per_second=4, queue_admit_interval_seconds=0.1) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(0.3))
        await queue.wait_drawn(event.id)
        await asyncio.sleep(1.5)  # the bucket is full: one second's worth, 4 admissions
        buyers = [Buyer.new() for _ in range(12)]
        answers = await asyncio.gather(*(queue.join(event.id, buyer) for buyer in buyers))
        at_once = sum(a.json()["state"] == "admitted" for a in answers)
        entrants = await queue.wait_admitted(event.id, 12, timeout=10)

    assert 1 <= at_once <= 5  # the four saved up (and one earned meanwhile), no more
    assert sorted(e.position for e in entrants) == list(range(1, 13))
    moments = [admitted_at(e, 600) for e in sorted(entrants, key=lambda e: e.position or 0)]
    assert moments == sorted(moments)
    assert (moments[-1] - moments[0]).total_seconds() >= (12 - 5) / 4 - 0.01


async def test_an_admission_expires_after_queue_admission_seconds(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, queue_admission_seconds=1) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(-60), waiting_room=False)
        buyer = Buyer.new()
        admitted = (await queue.join(event.id, buyer)).json()
        await asyncio.sleep(1.2)
        expired = await queue.place(event.id, buyer)
        again = await queue.join(event.id, buyer)

    assert admitted["state"] == "admitted"
    assert expired == {
        "state": "expired",
        "position": 1,
        "ahead": None,
        "estimatedWaitSeconds": None,
        "admittedUntil": admitted["admittedUntil"],
    }
    assert again.status_code == 200
    assert again.json() == expired  # joining again does not queue an expired buyer a second time


async def test_two_replicas_admitting_together_admit_each_buyer_once_in_position_order_at_the_rate(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    replica = settings.model_copy(update={"queue_admit_per_second": 20, "queue_admit_interval_seconds": 0.05})
    async with (
        running_queue(settings, js, queue_admit_per_second=20, queue_admit_interval_seconds=0.05) as queue,
        running(create_app(replica)) as second,
    ):
        event = await queue.add_event(on_sale_at=in_seconds(1))
        await asyncio.gather(*(queue.join(event.id, Buyer.new()) for _ in range(60)))
        room = await queue.wait_drawn(event.id)
        entrants = await queue.wait_admitted(event.id, 60, timeout=15)
        await asyncio.sleep(0.3)  # both loops go on: nobody is admitted a second time
        published = await queue.published("queue.admitted")
        by_replica = (queue.app.state.admission.admitted, second.state.admission.admitted)

    assert room.drawn_at is not None
    assert_admitted_in_position_order_at_most_at(entrants, drawn_at=room.drawn_at, rate=20, admission_seconds=600)
    assert sorted(m.data["position"] for m in published) == list(range(1, 61))
    assert len({m.data["userId"] for m in published}) == 60
    assert sum(by_replica) == 60
