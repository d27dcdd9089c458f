"""Use cases of the queue service: join a waiting room, show a buyer's place and a room's draw (routes); copy
events into rooms and draw a room when its schedule fires (listeners); admit the next buyers (the admission loop).

The rules are in ``domain.py``; the statements and the locks they take in ``queries.py``. Three decisions are
settled by locks (the README's "Design" has the whole argument):

- **who is in the draw**: a join before the draw inserts its entrant holding the room's draw lock shared; the
  draw holds it exclusively. A join that committed before the draw took the lock is in the draw; one that waited
  for it finds the room drawn and takes the next position after the draw's;
- **positions after the draw** are the room's ``last_position + 1``, taken under the room's row lock, so they are
  gapless and in commit order;
- **admission**: one transaction per room and batch, under the room's row lock (an advisory try-lock first lets a
  replica skip a room another one is admitting): the next positions in order, as many as the room's bucket allows.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from ticketing_common.db import Database, UnitOfWork, is_connection_error, new_id
from ticketing_common.errors import NotFoundError, TooManyRequestsError
from ticketing_common.events import BuyerAdmitted, EventCreated, EventUpdated, NotYet, is_next_version
from ticketing_common.events.catalogue import DrawDue
from ticketing_common.events.outbox import PUBLISH_TIMEOUT_SECONDS
from ticketing_queue import domain, queries
from ticketing_queue.config import Settings
from ticketing_queue.domain import Place
from ticketing_queue.schedules import admitted_event_id, as_utc, draw_due, schedule_headers, schedule_subject

logger = logging.getLogger("ticketing.queue")

# How long after its commit a publisher may still be sending an event from memory (as in the expiration service):
# an older unsent schedule can only be sent by the sweeper, which locks it while it does.
PUBLISHING_SECONDS = 2 * PUBLISH_TIMEOUT_SECONDS
ROOM_POLL_SECONDS = 0.1
# The stream keeps messages MAX_AGE_SECONDS (seven days): a draw's schedule is written again after three.
RENEW_SCHEDULES_AFTER_SECONDS = 3 * 24 * 3600.0
RENEW_BATCH = 100


@dataclass(frozen=True)
class Joined:
    """A join's outcome: the buyer's place, and whether this join added them (False: they had joined)."""

    place: Place
    new: bool


@dataclass(frozen=True)
class Draw:
    """What ``GET /api/queue/:eventId/draw`` shows: the commitment from the start; the seed (hex) and the
    entrants' hashes (sorted) once drawn."""

    commitment: str
    seed: str | None
    entrants: list[str] | None
    algorithm: str = domain.DRAW_ALGORITHM


class RevealedDraws:
    """Revealed draws of this process, which never change once drawn: each is computed once (its entrants
    hashed), not at every request. Least recently used first out, past ``max_entrants`` entrants in all."""

    def __init__(self, max_entrants: int = 1_000_000) -> None:
        self._draws: OrderedDict[uuid.UUID, Draw] = OrderedDict()
        self._max_entrants = max_entrants
        self._entrants = 0

    def get(self, event_id: uuid.UUID) -> Draw | None:
        draw = self._draws.get(event_id)
        if draw is not None:
            self._draws.move_to_end(event_id)
        return draw

    def put(self, event_id: uuid.UUID, draw: Draw) -> None:
        if event_id in self._draws:
            return
        self._draws[event_id] = draw
        self._entrants += len(draw.entrants or ())
        while self._entrants > self._max_entrants and len(self._draws) > 1:
            _, dropped = self._draws.popitem(last=False)
            self._entrants -= len(dropped.entrants or ())


# -- routes -----------------------------------------------------------------------------------------------------


async def join(*, db: Database, settings: Settings, user_id: uuid.UUID, event_id: uuid.UUID) -> Joined:
    """Put the caller in the event's waiting room (once: joining again changes nothing) and answer their place.

    429 past ``QUEUE_JOIN_LIMIT`` joins in the user's window (every attempt counts); 404 when the event is
    unknown after waiting ``QUEUE_EVENT_WAIT_SECONDS`` for its copy."""
    count = await queries.count_join(db.pool, user_id, window_seconds=settings.queue_join_window_seconds)
    if count.joins > settings.queue_join_limit:
        retry_after = domain.retry_after_seconds(count.seconds_left)
        logger.info("join throttled", extra={"user_id": str(user_id), "retry_after": retry_after})
        raise TooManyRequestsError(domain.TOO_MANY_JOINS_MESSAGE, retry_after=retry_after)
    room = await _wait_for_room(db, event_id, seconds=settings.queue_event_wait_seconds)
    new = False
    if await queries.find_place(db.pool, event_id, user_id) is None:
        new = await _enter(db, room, user_id, settings)
    return Joined(await show_place(db=db, settings=settings, user_id=user_id, event_id=event_id), new)


async def show_place(*, db: Database, settings: Settings, user_id: uuid.UUID, event_id: uuid.UUID) -> Place:
    """The caller's place in the event's waiting room; 404 when they have not joined it."""
    found = await queries.find_place(db.pool, event_id, user_id)
    if found is None:
        raise NotFoundError(domain.NOT_JOINED_MESSAGE)
    return domain.place(
        position=found.position,
        admitted_until=found.admitted_until,
        admitted_through=found.admitted_through,
        now=found.now,
        admit_per_second=settings.queue_admit_per_second,
    )


async def show_draw(*, db: Database, revealed: RevealedDraws, event_id: uuid.UUID) -> Draw:
    """The room's draw: its commitment, and once drawn its seed and entrants. 404 for an unknown event and for
    an event without a waiting room (there is no draw)."""
    cached = revealed.get(event_id)
    if cached is not None:
        return cached
    room = await queries.find_room(db.pool, event_id)
    if room is None:
        raise NotFoundError(domain.EVENT_NOT_FOUND_MESSAGE)
    if not room.waiting_room:
        raise NotFoundError(domain.NO_WAITING_ROOM_MESSAGE)
    commitment = domain.commitment(room.seed)
    if room.drawn_at is None:
        return Draw(commitment=commitment, seed=None, entrants=None)
    entrants = domain.published_entrants(await queries.draw_entrants(db.pool, room))
    draw = Draw(commitment=commitment, seed=room.seed.hex(), entrants=entrants)
    revealed.put(event_id, draw)
    return draw


async def _wait_for_room(db: Database, event_id: uuid.UUID, *, seconds: float) -> queries.Room:
    """The event's room, waiting up to ``seconds`` for its copy (``event.created`` may still be on its way)."""
    deadline = time.monotonic() + seconds
    while True:
        room = await queries.find_room(db.pool, event_id)
        if room is not None:
            return room
        if time.monotonic() >= deadline:
            raise NotFoundError(domain.EVENT_NOT_FOUND_MESSAGE)
        await asyncio.sleep(min(ROOM_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


async def _enter(db: Database, room: queries.Room, user_id: uuid.UUID, settings: Settings) -> bool:
    """Add the buyer to the room; False when a concurrent join of theirs did first."""
    async with db.unit_of_work() as uow:
        if room.waiting_room and room.drawn_at is None:
            await queries.share_draw_lock(uow.conn, room.event_id)
            if not await queries.is_drawn(uow.conn, room.event_id):
                return await queries.insert_undrawn_entrant(uow.conn, room.event_id, user_id)
            # Drawn while this join waited for the lock: it goes behind the draw.
        return await _enter_open_room(uow, room.event_id, user_id, settings)


async def _enter_open_room(uow: UnitOfWork, event_id: uuid.UUID, user_id: uuid.UUID, settings: Settings) -> bool:
    locked = await queries.lock_room(uow.conn, event_id)
    assert locked is not None, "rooms are never deleted"
    room = locked.room
    placement = domain.place_joiner(
        waiting_room=room.waiting_room,
        last_position=room.last_position,
        admitted_through=room.admitted_through,
        tokens=locked.admit_tokens,
        tokens_since=locked.admit_tokens_at,
        now=locked.now,
        rate=settings.queue_admit_per_second,
        admission=timedelta(seconds=settings.queue_admission_seconds),
    )
    if not await queries.insert_placed_entrant(
        uow.conn, event_id, user_id, position=placement.position, admitted_until=placement.admitted_until
    ):
        return False
    await queries.set_room_positions(
        uow.conn,
        event_id,
        last_position=placement.position,
        admitted_through=placement.admitted_through,
        tokens=placement.tokens,
        tokens_at=placement.tokens_since,
    )
    if placement.admitted_until is not None:
        _announce_admission(uow, event_id, queries.AdmittedBuyer(user_id, placement.position, placement.admitted_until))
    return True


# -- listeners --------------------------------------------------------------------------------------------------


async def copy_created_event(*, uow: UnitOfWork, event: EventCreated) -> bool:
    """Apply ``event.created`` in ``uow``: create the event's room with a fresh secret seed and, for a waiting
    room, stage its draw's schedule at ``onSaleAt``. A repeated creation changes nothing (False)."""
    schedule_event_id = new_id() if event.waiting_room else None
    created = await queries.insert_room(
        uow.conn,
        event_id=event.id,
        on_sale_at=as_utc(event.on_sale_at),
        waiting_room=event.waiting_room,
        version=event.version,
        seed=secrets.token_bytes(domain.SEED_BYTES),
        schedule_event_id=schedule_event_id,
    )
    if created and schedule_event_id is not None:
        _stage_draw(uow, event.id, event.on_sale_at, schedule_event_id)
    return created


async def copy_updated_event(*, uow: UnitOfWork, event: EventUpdated) -> None:
    """Apply ``event.updated`` in ``uow`` when it is the room's next version (``NotYet`` when ahead, nothing when
    behind). A new ``onSaleAt`` of a room not drawn yet replaces the draw's schedule: the previous schedule is
    sent already (the new one, sent after it, replaces it in the stream) or is deleted from the outbox; while a
    publisher may be sending it from memory, ``NotYet``. Once drawn, a new on-sale time changes nothing. Whether
    the event has a waiting room was decided once, at its creation: a change here is ignored."""
    locked = await queries.lock_room(uow.conn, event.id)
    if not is_next_version(None if locked is None else locked.room.version, event.version):
        return
    assert locked is not None
    room = locked.room
    on_sale_at = as_utc(event.on_sale_at)
    schedule_event_id = room.schedule_event_id
    if on_sale_at != room.on_sale_at and room.waiting_room and room.drawn_at is None:
        if schedule_event_id is not None and await queries.drop_unsent_schedule(
            uow.conn, schedule_event_id, publishing_seconds=PUBLISHING_SECONDS
        ):
            raise NotYet(f"the draw schedule of event {event.id} may be being published")
        schedule_event_id = new_id()
        _stage_draw(uow, event.id, on_sale_at, schedule_event_id)
        logger.info(
            "draw rescheduled",
            extra={"event_id": str(event.id), "from": room.on_sale_at.isoformat(), "to": on_sale_at.isoformat()},
        )
    await queries.update_room_copy(
        uow.conn, event.id, on_sale_at=on_sale_at, version=event.version, schedule_event_id=schedule_event_id
    )


async def draw_room(*, uow: UnitOfWork, due: DrawDue) -> bool:
    """Apply a fired ``queue.draw-due`` in ``uow``: draw the room, exactly once. Returns whether it drew.

    The draw lock (exclusive) waits for the joins in flight and holds off the next ones; every entrant without a
    position then gets one (``domain.draw_room``: a random one for those who joined before ``onSaleAt``, the next
    ones in join order for those who joined in the moments since), in one statement, and the room is marked drawn. A second delivery
    finds it drawn; a schedule of an on-sale time that has moved later since finds the sale not open yet."""
    await queries.take_draw_lock(uow.conn, due.event_id)
    locked = await queries.lock_room(uow.conn, due.event_id)
    if locked is None or not locked.room.waiting_room:
        logger.warning("draw of an unknown room ignored", extra={"event_id": str(due.event_id)})
        return False
    room = locked.room
    if not domain.should_draw(
        drawn=room.drawn_at is not None,
        room_on_sale_at=room.on_sale_at,
        fired_on_sale_at=as_utc(due.on_sale_at),
        now=locked.now,
    ):
        logger.info(
            "draw not due",
            extra={"event_id": str(due.event_id), "drawn": room.drawn_at is not None, "fired": str(due.on_sale_at)},
        )
        return False
    positions, in_draw = domain.draw_room(
        room.seed, await queries.undrawn_entrants(uow.conn, due.event_id), on_sale_at=room.on_sale_at
    )
    await queries.place_drawn_entrants(uow.conn, due.event_id, positions)
    drawn = await queries.mark_drawn(uow.conn, due.event_id, drawn_at=locked.now, drawn=in_draw, placed=len(positions))
    assert drawn, "the room was locked and not drawn"
    logger.info(
        "room drawn",
        extra={"event_id": str(due.event_id), "entrants": in_draw, "after_on_sale": len(positions) - in_draw},
    )
    return True


def _stage_draw(uow: UnitOfWork, event_id: uuid.UUID, on_sale_at: datetime, schedule_event_id: uuid.UUID) -> None:
    uow.publish(
        draw_due(event_id, on_sale_at),
        subject=schedule_subject(event_id),
        headers=schedule_headers(event_id, on_sale_at, source=uow.source),
        event_id=schedule_event_id,
    )


# -- admission --------------------------------------------------------------------------------------------------


async def admit_waiting(*, db: Database, settings: Settings) -> int:
    """One round of the admission loop: every room with buyers waiting at a position lets out its next batch.
    Returns how many buyers this call admitted. A room that fails is logged and skipped, so it holds back only
    itself; an unreachable database ends the round."""
    admitted = 0
    for event_id in await queries.rooms_admitting(db.pool):
        try:
            admitted += await admit_next(db=db, settings=settings, event_id=event_id)
        except Exception as exc:
            if is_connection_error(exc):
                raise
            logger.exception("cannot admit the next buyers of a room", extra={"event_id": str(event_id)})
    return admitted


async def admit_next(*, db: Database, settings: Settings, event_id: uuid.UUID) -> int:
    """Admit the room's next buyers in position order, as many as its bucket allows now, and publish a
    ``queue.admitted`` for each in the same transaction. Skips the room (0) while another transaction admits it."""
    async with db.unit_of_work() as uow:
        if not await queries.try_admission_lock(uow.conn, event_id):
            return 0
        locked = await queries.lock_room(uow.conn, event_id)
        if locked is None or locked.admit_tokens_at is None:
            return 0
        room = locked.room
        batch = domain.next_admission(
            admitted_through=room.admitted_through,
            last_position=room.last_position,
            tokens=locked.admit_tokens,
            since=locked.admit_tokens_at,
            now=locked.now,
            rate=settings.queue_admit_per_second,
        )
        if batch.count <= 0:
            return 0
        admitted_until = locked.now + timedelta(seconds=settings.queue_admission_seconds)
        buyers = await queries.admit_positions(
            uow.conn, event_id, first=batch.first, last=batch.last, admitted_until=admitted_until
        )
        if len(buyers) != batch.count:
            raise RuntimeError(f"room {event_id}: positions {batch.first}..{batch.last} are not all waiting")
        await queries.set_admission(
            uow.conn, event_id, admitted_through=batch.last, tokens=batch.tokens, tokens_at=locked.now
        )
        for buyer in buyers:
            _announce_admission(uow, event_id, buyer)
    return len(buyers)


async def renew_schedules(*, db: Database, older_than_seconds: float = RENEW_SCHEDULES_AFTER_SECONDS) -> int:
    """Write again the draw schedules written more than ``older_than_seconds`` ago (the same on-sale time, on the
    same subject: it replaces the old message). The stream keeps messages seven days and an event may go on sale
    weeks after it was created: renewed every three days, a schedule outlives an outage of four. Returns how many
    were renewed (a batch; the next round takes the rest)."""
    async with db.unit_of_work() as uow:
        rooms = await queries.rooms_to_renew(uow.conn, older_than_seconds=older_than_seconds, limit=RENEW_BATCH)
        renewed = 0
        for room in rooms:
            if room.schedule_event_id is not None and await queries.drop_unsent_schedule(
                uow.conn, room.schedule_event_id, publishing_seconds=PUBLISHING_SECONDS
            ):
                continue  # being published right now (not days old: renewed by a test) - next round
            schedule_event_id = new_id()
            _stage_draw(uow, room.event_id, room.on_sale_at, schedule_event_id)
            await queries.renew_schedule(uow.conn, room.event_id, schedule_event_id)
            renewed += 1
    if renewed:
        logger.info("draw schedules renewed", extra={"count": renewed})
    return renewed


async def forget_past_joins(*, db: Database, settings: Settings) -> None:
    """Drop the join counters of windows that are over (the table holds about one window of joiners)."""
    await queries.prune_join_limits(db.pool, window_seconds=settings.queue_join_window_seconds)


def _announce_admission(uow: UnitOfWork, event_id: uuid.UUID, buyer: queries.AdmittedBuyer) -> None:
    uow.publish(
        BuyerAdmitted(
            event_id=event_id, user_id=buyer.user_id, position=buyer.position, admitted_until=buyer.admitted_until
        ),
        event_id=admitted_event_id(event_id, buyer.user_id),
    )
