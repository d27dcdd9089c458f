"""The draw: at onSaleAt, fired by the room's JetStream schedule, exactly once; verifiable by anyone with the
published commitment, seed and entrants and the reference script; later joiners behind, in order."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nats.js import JetStreamContext
from queue_testing import Buyer, Queue, in_seconds, running_queue

from ticketing_common.config import ServiceSettings
from ticketing_common.db import create_database
from ticketing_common.events import EventCreated
from ticketing_common.events.bus import ensure_stream
from ticketing_common.events.catalogue import DrawDue
from ticketing_queue import domain, queries, service
from ticketing_queue.schedules import draw_due_event_id, schedule_subject

VERIFY_DRAW = Path(__file__).resolve().parents[1] / "verify_draw.py"
# So slow that nobody is admitted while a test looks at the places the draw gave (the first after 10 s).
NO_ADMISSION_YET = {"queue_admit_per_second": 0.1}


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def verify(draw: dict[str, object], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the reference script, as a buyer would, on the draw saved as a file."""
    saved = tmp_path / f"draw-{uuid.uuid4().hex[:8]}.json"
    saved.write_text(json.dumps(draw))
    return subprocess.run(
        [sys.executable, str(VERIFY_DRAW), str(saved), *args], capture_output=True, text=True, check=False
    )


async def test_the_room_shows_its_commitment_and_hides_its_seed_until_the_draw(queue: Queue) -> None:
    event = await queue.add_event()
    await queue.joined(event.id, 2)

    draw = await queue.draw(event.id)

    room = await queue.room(event.id)
    assert room is not None
    assert draw == {
        "commitment": hashlib.sha256(room.seed).hexdigest(),
        "seed": None,
        "entrants": None,
        "algorithm": domain.DRAW_ALGORITHM,
    }
    assert len(room.seed) == 32


async def test_the_draw_fires_at_on_sale_at_by_its_schedule_and_reveals_a_seed_matching_the_commitment(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, **NO_ADMISSION_YET) as queue:
        on_sale_at = in_seconds(1.5)
        event = await queue.add_event(on_sale_at=on_sale_at)
        schedule = await queue.schedule(event.id)
        assert schedule.headers["Nats-Schedule"] == f"@at {on_sale_at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        assert schedule.headers["Nats-Schedule-Target"] == "queue.draw-due"
        buyers = await queue.joined(event.id, 8)
        before = await queue.draw(event.id)

        room = await queue.wait_drawn(event.id)
        after = await queue.draw(event.id)
        places = {buyer.id: await queue.place(event.id, buyer) for buyer in buyers}

    assert room.drawn_at is not None
    assert on_sale_at <= room.drawn_at < on_sale_at + timedelta(seconds=1)  # never early; nats-server's ~250 ms
    assert await queue.schedule(event.id) is None  # a fired schedule leaves nothing behind
    assert after["commitment"] == before["commitment"]
    assert hashlib.sha256(bytes.fromhex(after["seed"])).hexdigest() == after["commitment"]
    assert after["entrants"] == sorted(sha256_hex(str(buyer.id)) for buyer in buyers)
    expected = domain.draw(bytes.fromhex(after["seed"]), [buyer.id for buyer in buyers])
    assert sorted(expected.values()) == list(range(1, 9))
    for buyer in buyers:
        position = expected[buyer.id]
        assert places[buyer.id] == {
            "state": "waiting",
            "position": position,
            "ahead": position - 1,
            "estimatedWaitSeconds": (position - 1) * 10,  # ahead / 0.1 per second
            "admittedUntil": None,
        }


async def test_the_reference_script_recomputes_every_position_the_service_gave(
    settings: ServiceSettings, js: JetStreamContext, tmp_path: Path
) -> None:
    async with running_queue(settings, js, **NO_ADMISSION_YET) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(1))
        buyers = await queue.joined(event.id, 12)
        await queue.wait_drawn(event.id)
        draw = await queue.draw(event.id)
        positions = {buyer.id: (await queue.place(event.id, buyer))["position"] for buyer in buyers}

    checked = verify(draw, tmp_path, "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == {sha256_hex(str(b.id)): positions[b.id] for b in buyers}

    me = buyers[5]
    mine = verify(draw, tmp_path, "--user-id", str(me.id).upper())  # any spelling of the id: canonicalised
    assert mine.returncode == 0
    assert f"is at position {positions[me.id]} of 12" in mine.stdout

    listing = verify(draw, tmp_path)
    assert listing.returncode == 0
    assert "commitment matches the seed; 12 entrants" in listing.stdout


async def test_the_reference_script_refuses_a_seed_that_does_not_match_the_commitment(
    settings: ServiceSettings, js: JetStreamContext, tmp_path: Path
) -> None:
    async with running_queue(settings, js, **NO_ADMISSION_YET) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(0.5))
        await queue.joined(event.id, 3)
        await queue.wait_drawn(event.id)
        draw = await queue.draw(event.id)

    forged = verify({**draw, "seed": "00" * 32}, tmp_path)
    undrawn = verify({**draw, "seed": None, "entrants": None}, tmp_path)
    reordered = verify({**draw, "entrants": list(reversed(draw["entrants"]))}, tmp_path)

    assert forged.returncode == 1
    assert "not the commitment" in forged.stderr
    assert undrawn.returncode == 1
    assert "has not happened yet" in undrawn.stderr
    assert reordered.returncode == 1


async def test_joining_many_times_or_early_changes_nothing_the_position_is_the_buyers_hash_and_the_seed(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, **NO_ADMISSION_YET) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(1.5))
        eager, others = Buyer.new(), [Buyer.new() for _ in range(5)]
        statuses = [(await queue.join(event.id, eager)).status_code for _ in range(5)]
        for buyer in others:
            await queue.join(event.id, buyer)
        await queue.wait_drawn(event.id)
        draw = await queue.draw(event.id)
        entrants = await queue.entrants(event.id)

    assert statuses == [201, 200, 200, 200, 200]
    assert [e.user_id for e in entrants].count(eager.id) == 1  # one row: one ticket in the draw
    # The positions are a function of the seed and each buyer's own id only: neither when nor how often they joined.
    seed = bytes.fromhex(draw["seed"])
    assert {e.user_id: e.position for e in entrants} == domain.draw(seed, [b.id for b in reversed([eager, *others])])


async def test_buyers_who_join_after_the_draw_go_behind_it_in_the_order_they_joined(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, **NO_ADMISSION_YET) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(1))
        early = await queue.joined(event.id, 4)
        await queue.wait_drawn(event.id)
        late = await queue.joined(event.id, 3)
        places = [await queue.place(event.id, buyer) for buyer in late]
        draw = await queue.draw(event.id)

    assert [(p["state"], p["position"], p["ahead"]) for p in places] == [
        ("waiting", 5, 4),
        ("waiting", 6, 5),
        ("waiting", 7, 6),
    ]
    assert draw["entrants"] == sorted(sha256_hex(str(b.id)) for b in early)  # the draw is the early ones only


async def test_the_draw_happens_exactly_once_even_when_its_message_comes_again(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, **NO_ADMISSION_YET) as queue:
        event = await queue.add_event(on_sale_at=in_seconds(0.5))
        await queue.joined(event.id, 5)
        drawn = await queue.wait_drawn(event.id)
        positions = {e.user_id: e.position for e in await queue.entrants(event.id)}
        await queue.wait_handled("queue.draw-due", 1)
        late = await queue.joined(event.id, 1)

        due = DrawDue(event_id=event.id, on_sale_at=event.on_sale_at)
        # The same fired message again (same ce-id: the inbox), and two copies under new ids (the room's guard).
        await queue.publish(due, event_id=draw_due_event_id(event.id, event.on_sale_at), msg_id="again")
        await queue.publish(due)
        await queue.publish(DrawDue(event_id=event.id, on_sale_at=datetime.now(UTC)))
        await queue.wait_handled("queue.draw-due", 3)
        await queue.wait_handled("queue.draw-due", 1, "duplicate")

        assert await queue.room(event.id) == dataclasses.replace(drawn, last_position=6)
        assert {e.user_id: e.position for e in await queue.entrants(event.id)} == {**positions, late[0].id: 6}


async def test_a_join_in_flight_when_the_draw_fires_is_in_it_and_one_arriving_during_the_draw_goes_behind(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, **NO_ADMISSION_YET) as queue:
        on_sale_at = in_seconds(1)
        event = await queue.add_event(on_sale_at=on_sale_at)
        await queue.joined(event.id, 2)
        in_flight, arriving = Buyer.new(), Buyer.new()

        # A join that took the shared draw lock and inserted its entrant, and has not committed at onSaleAt.
        async with queue.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            await queries.share_draw_lock(conn, event.id)
            assert await queries.insert_undrawn_entrant(conn, event.id, in_flight.id)
            await asyncio.sleep((on_sale_at - datetime.now(UTC)).total_seconds() + 0.6)  # fired; the draw waits
            assert (await queue.room(event.id)).drawn_at is None  # type: ignore[union-attr]
            joining = asyncio.create_task(queue.join(event.id, arriving))  # queues behind the waiting draw
            await asyncio.sleep(0.3)
            assert not joining.done()
            await transaction.commit()
        response = await joining
        drawn = await queue.wait_drawn(event.id)
        draw = await queue.draw(event.id)

    assert drawn.drawn_count == 3
    assert sha256_hex(str(in_flight.id)) in draw["entrants"]
    assert response.status_code == 201
    assert response.json()["position"] == 4
    assert sha256_hex(str(arriving.id)) not in draw["entrants"]


async def test_buyers_who_joined_after_on_sale_at_but_before_the_draw_ran_go_behind_it_in_join_order(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    # The schedule fires a moment after onSaleAt and the draw waits for the joins in flight: a join that began in
    # between is not in the lottery. Played with the use case itself, the join times set by hand.
    await ensure_stream(js, settings.nats_stream)
    db = await create_database(settings.database_dsn, service=settings.service_name, size=2)
    try:
        on_sale_at = datetime.now(UTC) - timedelta(seconds=1)
        created = EventCreated(
            id=uuid.uuid4(),
            name="Concert",
            venue="Hall",
            starts_at=on_sale_at + timedelta(days=1),
            on_sale_at=on_sale_at,
            max_per_buyer=2,
            waiting_room=True,
            user_id=uuid.uuid4(),
            version=0,
        )
        async with db.unit_of_work() as uow:
            await service.copy_created_event(uow=uow, event=created)
        early = [uuid.uuid4() for _ in range(5)]
        late = [uuid.uuid4() for _ in range(3)]
        joins = [(u, on_sale_at - timedelta(seconds=5 - i)) for i, u in enumerate(early)]
        joins += [(u, on_sale_at + timedelta(milliseconds=30 * (3 - i))) for i, u in enumerate(late)]  # last first
        await db.pool.executemany(
            "INSERT INTO entrants (event_id, user_id, joined_at) VALUES ($1, $2, $3)",
            [(created.id, user, joined_at) for user, joined_at in joins],
        )

        async with db.unit_of_work() as uow:
            assert await service.draw_room(uow=uow, due=DrawDue(event_id=created.id, on_sale_at=on_sale_at))
        room = await queries.find_room(db.pool, created.id)
        positions = dict(await db.pool.fetch("SELECT user_id, position FROM entrants WHERE event_id = $1", created.id))
        draw = await service.show_draw(db=db, revealed=service.RevealedDraws(), event_id=created.id)
    finally:
        await db.pool.close()

    assert room is not None
    assert (room.drawn_count, room.last_position) == (5, 8)
    assert sorted(positions[u] for u in early) == [1, 2, 3, 4, 5]
    assert [positions[u] for u in reversed(late)] == [6, 7, 8]
    assert draw.entrants == sorted(sha256_hex(str(u)) for u in early)


async def test_joins_racing_the_draw_each_get_one_position_gapless_and_the_draw_is_exactly_those_before_it(
    settings: ServiceSettings, js: JetStreamContext
) -> None:
    async with running_queue(settings, js, **NO_ADMISSION_YET) as queue:
        on_sale_at = in_seconds(1)
        event = await queue.add_event(on_sale_at=on_sale_at)
        buyers = [Buyer.new() for _ in range(40)]

        async def join_around_the_draw(index: int, buyer: Buyer) -> int:
            await asyncio.sleep(0.6 + index * 0.02)  # from 0.4 s before onSaleAt to 0.4 s after
            return (await queue.join(event.id, buyer)).status_code

        statuses = await asyncio.gather(*(join_around_the_draw(i, b) for i, b in enumerate(buyers)))
        room = await queue.wait_drawn(event.id)
        entrants = await queue.entrants(event.id)
        draw = await queue.draw(event.id)

    assert statuses == [201] * 40
    assert sorted(e.position for e in entrants if e.position is not None) == list(range(1, 41))
    in_draw = {e.user_id for e in entrants if e.position is not None and e.position <= room.drawn_count}
    assert draw["entrants"] == sorted(sha256_hex(str(user_id)) for user_id in in_draw)
    assert domain.draw(bytes.fromhex(draw["seed"]), in_draw) == {
        e.user_id: e.position for e in entrants if e.user_id in in_draw
    }


async def test_the_schedule_is_one_message_per_event_on_its_own_subject(queue: Queue) -> None:
    event = await queue.add_event()

    schedule = await queue.schedule(event.id)

    assert schedule.subject == schedule_subject(event.id) == f"queue.draws.{event.id}"
    assert json.loads(schedule.data) == {
        "eventId": str(event.id),
        "onSaleAt": event.on_sale_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    assert schedule.headers["ce-id"] == str(draw_due_event_id(event.id, event.on_sale_at))
    assert schedule.headers["ce-type"] == "queue.draw-due"
    assert datetime.fromisoformat(schedule.headers["ce-time"]) == event.on_sale_at
