"""Every statement of the queue service, and the typed rows they return.

The tables are created by ``migrations/versions/0001_initial.py``; this module is the only place that knows their
columns. Each function runs one statement.

Locks, per room (the service README's "Design" explains why each is there):

- the **draw lock**, a transaction-level advisory lock on (``DRAW_LOCK_NAMESPACE``, the event): a join before the
  draw holds it shared, the draw exclusively. PostgreSQL queues advisory lock requests fairly, so the draw waits
  for the joins in flight and the joins that come after it wait for the draw;
- the **room row**, ``FOR NO KEY UPDATE``: taken by every change of a room whose sale is open (a join taking the
  next position, an admission batch), by the draw and by the copy of ``event.updated``;
- the **admission lock**, a transaction-level advisory try-lock on (``ADMISSION_LOCK_NAMESPACE``, the event): a
  replica's admission loop skips a room another replica is admitting right now.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ticketing_common.db import Executor
from ticketing_queue.domain import Joiner

DRAW_LOCK_NAMESPACE = 0x5155_0001
ADMISSION_LOCK_NAMESPACE = 0x5155_0002


@dataclass(frozen=True)
class Room:
    """An event's waiting room: the copy of the event (on-sale time, whether it has a waiting room, version),
    the draw's seed and outcome, the positions given out and admitted."""

    event_id: uuid.UUID
    on_sale_at: datetime
    waiting_room: bool
    version: int
    seed: bytes
    schedule_event_id: uuid.UUID | None
    drawn_at: datetime | None
    drawn_count: int
    last_position: int
    admitted_through: int


@dataclass(frozen=True)
class LockedRoom:
    """A room read under its row lock, with its admission bucket and the database's clock when it was locked."""

    room: Room
    admit_tokens: float
    admit_tokens_at: datetime | None
    now: datetime


@dataclass(frozen=True)
class EntrantPlace:
    """A buyer's row of a room, with what their place depends on: the room's admission cursor and the clock."""

    position: int | None
    admitted_until: datetime | None
    admitted_through: int
    now: datetime


@dataclass(frozen=True)
class AdmittedBuyer:
    user_id: uuid.UUID
    position: int
    admitted_until: datetime


@dataclass(frozen=True)
class JoinCount:
    """A user's joins in the current window, and the seconds left in it."""

    joins: int
    seconds_left: float


_ROOM_COLUMNS = """
event_id, on_sale_at, waiting_room, version, seed, schedule_event_id, drawn_at, drawn_count, last_position,
admitted_through
"""

FIND_ROOM = "SELECT" + _ROOM_COLUMNS + "FROM rooms WHERE event_id = $1"

# The row lock of a room whose state is about to change, and the clock read after it was granted (now() would be
# the start of the transaction, before any wait).
LOCK_ROOM = (
    "SELECT"
    + _ROOM_COLUMNS
    + ", admit_tokens, admit_tokens_at, clock_timestamp() AS now FROM rooms WHERE event_id = $1 FOR NO KEY UPDATE"
)

FIND_PLACE = """
SELECT e.position, e.admitted_until, r.admitted_through, clock_timestamp() AS now
FROM entrants e JOIN rooms r ON r.event_id = e.event_id
WHERE e.event_id = $1 AND e.user_id = $2
"""

# A fixed window per user, started by the first join counted in it; one row per user, one statement per join.
COUNT_JOIN = """
INSERT INTO join_limits AS l (user_id, window_started_at, joins) VALUES ($1, statement_timestamp(), 1)
ON CONFLICT (user_id) DO UPDATE SET
    window_started_at = CASE WHEN l.window_started_at <= statement_timestamp() - make_interval(secs => $2)
                             THEN statement_timestamp() ELSE l.window_started_at END,
    joins = CASE WHEN l.window_started_at <= statement_timestamp() - make_interval(secs => $2)
                 THEN 1 ELSE l.joins + 1 END
RETURNING joins,
          extract(epoch FROM window_started_at + make_interval(secs => $2) - statement_timestamp())::float8
              AS seconds_left
"""

PRUNE_JOIN_LIMITS = (
    "DELETE FROM join_limits WHERE window_started_at <= statement_timestamp() - make_interval(secs => $1)"
)

SHARE_DRAW_LOCK = "SELECT pg_advisory_xact_lock_shared($1::int, $2::int)"
TAKE_DRAW_LOCK = "SELECT pg_advisory_xact_lock($1::int, $2::int)"
TRY_ADMISSION_LOCK = "SELECT pg_try_advisory_xact_lock($1::int, $2::int)"

# A statement of its own after the draw lock: its snapshot is taken once the lock is granted.
IS_DRAWN = "SELECT drawn_at IS NOT NULL FROM rooms WHERE event_id = $1"

INSERT_UNDRAWN_ENTRANT = """
INSERT INTO entrants (event_id, user_id) VALUES ($1, $2)
ON CONFLICT (event_id, user_id) DO NOTHING
RETURNING user_id
"""

# Under the room's row lock: the position is the room's next one, so positions stay gapless.
INSERT_PLACED_ENTRANT = """
INSERT INTO entrants (event_id, user_id, position, admitted_until) VALUES ($1, $2, $3, $4)
ON CONFLICT (event_id, user_id) DO NOTHING
RETURNING user_id
"""

SET_ROOM_POSITIONS = """
UPDATE rooms SET last_position = $2, admitted_through = $3, admit_tokens = $4, admit_tokens_at = $5
WHERE event_id = $1
"""

UNDRAWN_ENTRANTS = "SELECT user_id, joined_at FROM entrants WHERE event_id = $1 AND position IS NULL"

PLACE_DRAWN_ENTRANTS = """
UPDATE entrants e SET position = d.position
FROM unnest($2::uuid[], $3::int[]) AS d (user_id, position)
WHERE e.event_id = $1 AND e.user_id = d.user_id AND e.position IS NULL
"""

# Exactly once: the guard on drawn_at makes a second draw change nothing. The bucket starts empty at the draw.
MARK_DRAWN = """
UPDATE rooms SET drawn_at = $2, drawn_count = $3, last_position = $4, admitted_through = 0,
                 admit_tokens = 0, admit_tokens_at = $2
WHERE event_id = $1 AND drawn_at IS NULL
RETURNING event_id
"""

DRAW_ENTRANTS = "SELECT user_id FROM entrants WHERE event_id = $1 AND position <= $2"

ROOMS_ADMITTING = "SELECT event_id FROM rooms WHERE admitted_through < last_position"

ADMIT_POSITIONS = """
UPDATE entrants SET admitted_until = $4
WHERE event_id = $1 AND position BETWEEN $2 AND $3 AND admitted_until IS NULL
RETURNING user_id, position, admitted_until
"""

SET_ADMISSION = "UPDATE rooms SET admitted_through = $2, admit_tokens = $3, admit_tokens_at = $4 WHERE event_id = $1"

INSERT_ROOM = """
INSERT INTO rooms (event_id, on_sale_at, waiting_room, version, seed, schedule_event_id, schedule_written_at)
VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6::uuid IS NULL THEN NULL ELSE statement_timestamp() END)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

# The schedule's write time moves only when a new schedule was staged ($4 differs from the room's).
UPDATE_ROOM_COPY = """
UPDATE rooms SET on_sale_at = $2, version = $3,
    schedule_written_at = CASE WHEN schedule_event_id IS DISTINCT FROM $4 THEN statement_timestamp()
                               ELSE schedule_written_at END,
    schedule_event_id = $4
WHERE event_id = $1
"""

# Rooms still to draw whose schedule was written more than $1 seconds ago (the stream keeps messages seven days),
# oldest first, skipping rooms a replica or a listener holds; not those about to draw (the schedule fires soon).
ROOMS_TO_RENEW = """
SELECT event_id, on_sale_at, schedule_event_id FROM rooms
WHERE waiting_room AND drawn_at IS NULL
  AND schedule_written_at < statement_timestamp() - make_interval(secs => $1)
  AND on_sale_at > statement_timestamp() + interval '1 minute'
ORDER BY schedule_written_at LIMIT $2
FOR NO KEY UPDATE SKIP LOCKED
"""

RENEW_SCHEDULE = (
    "UPDATE rooms SET schedule_event_id = $2, schedule_written_at = statement_timestamp() WHERE event_id = $1"
)

# As in the expiration service: a statement of its own; deletes the schedule while unsent and older than $2
# seconds (waiting for a sweeper sending it, then finding it sent); reports a younger unsent one, which a
# publisher may be sending from memory right now.
DROP_UNSENT_SCHEDULE = """
WITH dropped AS (
    DELETE FROM outbox
    WHERE event_id = $1 AND sent_at IS NULL AND created_at < now() - make_interval(secs => $2)
)
SELECT EXISTS (
    SELECT FROM outbox WHERE event_id = $1 AND sent_at IS NULL AND created_at >= now() - make_interval(secs => $2)
)
"""


def lock_key(event_id: uuid.UUID) -> int:
    """The event's key in an advisory lock namespace (32 bits of its id: two events sharing one only wait for
    each other now and then)."""
    return int.from_bytes(event_id.bytes[:4], "big", signed=True)


async def find_room(db: Executor, event_id: uuid.UUID) -> Room | None:
    row = await db.fetchrow(FIND_ROOM, event_id)
    return None if row is None else _room(row)


async def lock_room(conn: asyncpg.Connection, event_id: uuid.UUID) -> LockedRoom | None:
    """The room under its row lock (until the transaction ends); None when there is no such room."""
    row = await conn.fetchrow(LOCK_ROOM, event_id)
    if row is None:
        return None
    return LockedRoom(_room(row), row["admit_tokens"], row["admit_tokens_at"], row["now"])


async def find_place(db: Executor, event_id: uuid.UUID, user_id: uuid.UUID) -> EntrantPlace | None:
    row = await db.fetchrow(FIND_PLACE, event_id, user_id)
    return None if row is None else EntrantPlace(**dict(row))


async def count_join(db: Executor, user_id: uuid.UUID, *, window_seconds: float) -> JoinCount:
    """Count one join of ``user_id`` in its current window (a new window when the last one is over)."""
    row = await db.fetchrow(COUNT_JOIN, user_id, window_seconds)
    return JoinCount(joins=row["joins"], seconds_left=row["seconds_left"])


async def prune_join_limits(db: Executor, *, window_seconds: float) -> None:
    """Forget the counters of windows that are over."""
    await db.execute(PRUNE_JOIN_LIMITS, window_seconds)


async def share_draw_lock(conn: asyncpg.Connection, event_id: uuid.UUID) -> None:
    """Hold the room's draw lock shared until the transaction ends (a join before the draw)."""
    await conn.execute(SHARE_DRAW_LOCK, DRAW_LOCK_NAMESPACE, lock_key(event_id))


async def take_draw_lock(conn: asyncpg.Connection, event_id: uuid.UUID) -> None:
    """Hold the room's draw lock exclusively until the transaction ends (the draw)."""
    await conn.execute(TAKE_DRAW_LOCK, DRAW_LOCK_NAMESPACE, lock_key(event_id))


async def try_admission_lock(conn: asyncpg.Connection, event_id: uuid.UUID) -> bool:
    """Take the room's admission lock until the transaction ends, unless another transaction holds it."""
    return bool(await conn.fetchval(TRY_ADMISSION_LOCK, ADMISSION_LOCK_NAMESPACE, lock_key(event_id)))


async def is_drawn(conn: asyncpg.Connection, event_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(IS_DRAWN, event_id))


async def insert_undrawn_entrant(conn: asyncpg.Connection, event_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Add the buyer to the room's next draw; False when they had joined already."""
    return await conn.fetchval(INSERT_UNDRAWN_ENTRANT, event_id, user_id) is not None


async def insert_placed_entrant(
    conn: asyncpg.Connection,
    event_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    position: int,
    admitted_until: datetime | None,
) -> bool:
    """Add the buyer at ``position`` (admitted when ``admitted_until`` is set); False when they had joined."""
    return await conn.fetchval(INSERT_PLACED_ENTRANT, event_id, user_id, position, admitted_until) is not None


async def set_room_positions(
    conn: asyncpg.Connection,
    event_id: uuid.UUID,
    *,
    last_position: int,
    admitted_through: int,
    tokens: float,
    tokens_at: datetime | None,
) -> None:
    await conn.execute(SET_ROOM_POSITIONS, event_id, last_position, admitted_through, tokens, tokens_at)


async def undrawn_entrants(conn: asyncpg.Connection, event_id: uuid.UUID) -> list[Joiner]:
    """The room's entrants without a position (they joined before its draw), with when their join began."""
    return [Joiner(row["user_id"], row["joined_at"]) for row in await conn.fetch(UNDRAWN_ENTRANTS, event_id)]


async def place_drawn_entrants(conn: asyncpg.Connection, event_id: uuid.UUID, positions: dict[uuid.UUID, int]) -> None:
    """Give each entrant of the draw its position, in one statement."""
    await conn.execute(PLACE_DRAWN_ENTRANTS, event_id, list(positions), list(positions.values()))


async def mark_drawn(
    conn: asyncpg.Connection, event_id: uuid.UUID, *, drawn_at: datetime, drawn: int, placed: int
) -> bool:
    """Record the draw of ``drawn`` entrants among the ``placed`` who got a position (positions ``1..placed``);
    False, changing nothing, when the room was drawn already."""
    return await conn.fetchval(MARK_DRAWN, event_id, drawn_at, drawn, placed) is not None


async def draw_entrants(db: Executor, room: Room) -> list[uuid.UUID]:
    """The user ids of the entrants of a drawn room's draw (positions ``1..drawn_count``)."""
    return [row["user_id"] for row in await db.fetch(DRAW_ENTRANTS, room.event_id, room.drawn_count)]


async def rooms_admitting(db: Executor) -> list[uuid.UUID]:
    """Rooms with buyers waiting at a position."""
    return [row["event_id"] for row in await db.fetch(ROOMS_ADMITTING)]


async def admit_positions(
    conn: asyncpg.Connection, event_id: uuid.UUID, *, first: int, last: int, admitted_until: datetime
) -> list[AdmittedBuyer]:
    """Admit the buyers at positions ``first..last`` until ``admitted_until``; returns them in position order."""
    rows = await conn.fetch(ADMIT_POSITIONS, event_id, first, last, admitted_until)
    return sorted((AdmittedBuyer(**dict(row)) for row in rows), key=lambda buyer: buyer.position)


async def set_admission(
    conn: asyncpg.Connection, event_id: uuid.UUID, *, admitted_through: int, tokens: float, tokens_at: datetime
) -> None:
    await conn.execute(SET_ADMISSION, event_id, admitted_through, tokens, tokens_at)


async def insert_room(
    conn: asyncpg.Connection,
    *,
    event_id: uuid.UUID,
    on_sale_at: datetime,
    waiting_room: bool,
    version: int,
    seed: bytes,
    schedule_event_id: uuid.UUID | None,
) -> bool:
    """Create the event's room; False when it exists already (the first creation wins, seed included)."""
    inserted = await conn.fetchval(INSERT_ROOM, event_id, on_sale_at, waiting_room, version, seed, schedule_event_id)
    return inserted is not None


async def update_room_copy(
    conn: asyncpg.Connection,
    event_id: uuid.UUID,
    *,
    on_sale_at: datetime,
    version: int,
    schedule_event_id: uuid.UUID | None,
) -> None:
    await conn.execute(UPDATE_ROOM_COPY, event_id, on_sale_at, version, schedule_event_id)


@dataclass(frozen=True)
class ScheduledRoom:
    event_id: uuid.UUID
    on_sale_at: datetime
    schedule_event_id: uuid.UUID | None


async def rooms_to_renew(conn: asyncpg.Connection, *, older_than_seconds: float, limit: int) -> list[ScheduledRoom]:
    """Rooms whose draw's schedule should be written again, locked until the transaction ends."""
    rows = await conn.fetch(ROOMS_TO_RENEW, older_than_seconds, limit)
    return [ScheduledRoom(**dict(row)) for row in rows]


async def renew_schedule(conn: asyncpg.Connection, event_id: uuid.UUID, schedule_event_id: uuid.UUID) -> None:
    await conn.execute(RENEW_SCHEDULE, event_id, schedule_event_id)


async def drop_unsent_schedule(
    conn: asyncpg.Connection, schedule_event_id: uuid.UUID, *, publishing_seconds: float
) -> bool:
    """Delete the schedule from the outbox if it is unsent and no publisher can still be sending it; returns
    True, deleting nothing, when one may be (unsent and younger than ``publishing_seconds``)."""
    return bool(await conn.fetchval(DROP_UNSENT_SCHEDULE, schedule_event_id, publishing_seconds))


def _room(row: asyncpg.Record) -> Room:
    return Room(
        event_id=row["event_id"],
        on_sale_at=row["on_sale_at"],
        waiting_room=row["waiting_room"],
        version=row["version"],
        seed=bytes(row["seed"]),
        schedule_event_id=row["schedule_event_id"],
        drawn_at=row["drawn_at"],
        drawn_count=row["drawn_count"],
        last_position=row["last_position"],
        admitted_through=row["admitted_through"],
    )
