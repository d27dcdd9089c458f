"""The rules of the queue service, without I/O: the draw (a commit-reveal lottery anyone can recompute), a buyer's
place in line, and how fast a waiting room lets buyers out.

A buyer's life in one event's waiting room::

    joined before the draw ──draw at onSaleAt──▶ waiting at position p ──admitted──▶ admitted ──admittedUntil──▶ expired
    joined after the draw ─────────────────────▶ waiting at position n+1, n+2, … (or admitted at once, see below)

The draw (:func:`draw`), precisely (``DRAW_ALGORITHM``, and ``services/queue/verify_draw.py`` recomputes it):

1. ``seed``: 32 random bytes, drawn when the room is created; ``commitment = sha256(seed)`` (lowercase hex) is
   public from then on, ``seed`` (lowercase hex) only after the draw.
2. Each entrant of the draw (every buyer whose join committed before the draw): ``h = sha256(userId)`` over the
   UTF-8 bytes of the user id in its canonical form (lowercase, hyphenated, 36 characters), as lowercase hex. The
   published ``entrants`` are these ``h``, sorted ascending.
3. ``k = sha256(seed || bytes.fromhex(h))`` (64 bytes hashed), lowercase hex.
4. Positions ``1..n`` go to the entrants by ascending ``k``; equal ``k`` (never seen: it needs a SHA-256
   collision) by ascending ``h``.

Later joiners get ``n + 1``, ``n + 2``, … in the order their joins commit.

Fairness: ``k`` depends only on the seed and the buyer's own id, so neither the moment of joining nor joining
again changes it (a buyer is one row, joined once). The seed was fixed, and committed to, before anyone could
join, so nobody (the service included, short of adding invented buyers) can pick it to favour a given entrant
list.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

SEED_BYTES = 32

DRAW_ALGORITHM = (
    "queue-draw-v1: h = sha256(utf8(userId as lowercase hyphenated UUID)) hex; entrants = sorted h; "
    "k = sha256(seed bytes || bytes.fromhex(h)) hex; positions 1..n by ascending (k, h); "
    "commitment = sha256(seed bytes) hex; later joiners get n+1, n+2, ... in join order"
)

EVENT_NOT_FOUND_MESSAGE = "Event not found"
NOT_JOINED_MESSAGE = "You have not joined this event's queue"
NO_WAITING_ROOM_MESSAGE = "This event has no waiting room"
TOO_MANY_JOINS_MESSAGE = "Too many attempts to join a queue: retry later"


# -- the draw -------------------------------------------------------------------------------------------------


def commitment(seed: bytes) -> str:
    """What the room shows before its draw: ``sha256(seed)``, lowercase hex."""
    return hashlib.sha256(seed).hexdigest()


def entrant_hash(user_id: uuid.UUID) -> str:
    """``sha256`` of the user id's canonical text (lowercase, hyphenated), lowercase hex: how an entrant is
    published, and how a buyer finds themself in a revealed draw."""
    return hashlib.sha256(str(user_id).encode()).hexdigest()


def sort_key(seed: bytes, entrant: str) -> str:
    """An entrant's place in the draw: ``sha256(seed || bytes.fromhex(entrant))``, lowercase hex."""
    return hashlib.sha256(seed + bytes.fromhex(entrant)).hexdigest()


def draw(seed: bytes, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Positions ``1..n`` of the entrants, by ascending (sort key, entrant hash); each user once."""
    hashes = {user_id: entrant_hash(user_id) for user_id in user_ids}
    ranked = sorted(hashes, key=lambda user_id: (sort_key(seed, hashes[user_id]), hashes[user_id]))
    return {user_id: position for position, user_id in enumerate(ranked, start=1)}


@dataclass(frozen=True)
class Joiner:
    """A buyer without a position when the room draws, and when their join began (the database's clock)."""

    user_id: uuid.UUID
    joined_at: datetime


def draw_room(seed: bytes, joiners: Iterable[Joiner], *, on_sale_at: datetime) -> tuple[dict[uuid.UUID, int], int]:
    """Positions of everyone without one when the room draws, and how many were in the draw: those who joined
    before ``on_sale_at`` by :func:`draw` (``1..n``); those who joined at or after it, in the moments before the
    fired schedule reached the service, behind them in the order they joined (``n+1, …``), like every later
    joiner."""
    joiners = list(joiners)
    early = [j.user_id for j in joiners if j.joined_at < on_sale_at]
    positions = draw(seed, early)
    late = sorted((j for j in joiners if j.joined_at >= on_sale_at), key=lambda j: (j.joined_at, j.user_id))
    for position, joiner in enumerate(late, start=len(positions) + 1):
        positions.setdefault(joiner.user_id, position)
    return positions, len(early)


def published_entrants(user_ids: Iterable[uuid.UUID]) -> list[str]:
    """The draw's ``entrants`` as revealed: the entrants' hashes, sorted."""
    return sorted(entrant_hash(user_id) for user_id in user_ids)


def should_draw(*, drawn: bool, room_on_sale_at: datetime, fired_on_sale_at: datetime, now: datetime) -> bool:
    """Whether a fired ``queue.draw-due`` draws the room: never twice; yes when it is the schedule of the on-sale
    time in force (whatever the database's clock says: nats-server fired it at that time), or when the sale is
    open anyway. A schedule of an on-sale time moved later since is ignored: the schedule of the new time fires."""
    if drawn:
        return False
    return fired_on_sale_at == room_on_sale_at or room_on_sale_at <= now


# -- a buyer's place ------------------------------------------------------------------------------------------


class PlaceState(StrEnum):
    WAITING = "waiting"
    ADMITTED = "admitted"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Place:
    """What ``GET /api/queue/:eventId`` answers."""

    state: PlaceState
    position: int | None
    ahead: int | None
    estimated_wait_seconds: int | None
    admitted_until: datetime | None


def place(
    *,
    position: int | None,
    admitted_until: datetime | None,
    admitted_through: int,
    now: datetime,
    admit_per_second: float,
) -> Place:
    """A buyer's place: waiting without a position before the draw; waiting at ``position`` with the buyers
    ahead (positions not admitted yet) and their admission time; admitted until ``admitted_until``; expired
    after it."""
    if admitted_until is not None:
        state = PlaceState.ADMITTED if now < admitted_until else PlaceState.EXPIRED
        return Place(state, position, None, None, admitted_until)
    if position is None:
        return Place(PlaceState.WAITING, None, None, None, None)
    ahead = max(0, position - admitted_through - 1)
    return Place(PlaceState.WAITING, position, ahead, estimated_wait_seconds(ahead, admit_per_second), None)


def estimated_wait_seconds(ahead: int, admit_per_second: float) -> int:
    """``ahead / rate`` rounded up: the time the buyers ahead take to be let out."""
    return math.ceil(ahead / admit_per_second - 1e-9) if ahead > 0 else 0


# -- admission --------------------------------------------------------------------------------------------------


def burst(admit_per_second: float) -> float:
    """The most admissions a room saves up while nobody waits: one second's worth (at least one)."""
    return max(1.0, admit_per_second)


def tokens_at(*, tokens: float, since: datetime, now: datetime, admit_per_second: float) -> float:
    """A room's admissions available at ``now``: ``tokens`` at ``since``, plus ``admit_per_second`` for every
    second since, up to :func:`burst` (a token bucket, empty at the draw)."""
    elapsed = max(0.0, (now - since).total_seconds())
    return min(burst(admit_per_second), tokens + elapsed * admit_per_second)


@dataclass(frozen=True)
class Admission:
    """The next batch of a room: positions ``first..last`` (none when ``count`` is 0), and the bucket after it."""

    first: int
    last: int
    tokens: float

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def next_admission(
    *, admitted_through: int, last_position: int, tokens: float, since: datetime, now: datetime, rate: float
) -> Admission:
    """The positions the room lets out now: as many of those waiting (``admitted_through + 1 ..
    last_position``) as whole admissions are available, in position order."""
    available = tokens_at(tokens=tokens, since=since, now=now, admit_per_second=rate)
    count = min(last_position - admitted_through, math.floor(available + 1e-9))
    return Admission(admitted_through + 1, admitted_through + max(0, count), available - max(0, count))


@dataclass(frozen=True)
class JoinPlacement:
    """Where a join after the draw (or to an event without a waiting room) goes: the next position, admitted at
    once (``admitted_until`` set) or waiting; and the room's admission state after it."""

    position: int
    admitted_until: datetime | None
    admitted_through: int
    tokens: float
    tokens_since: datetime | None


def place_joiner(
    *,
    waiting_room: bool,
    last_position: int,
    admitted_through: int,
    tokens: float,
    tokens_since: datetime | None,
    now: datetime,
    rate: float,
    admission: timedelta,
) -> JoinPlacement:
    """A join to a room whose sale is open takes the next position. Without a waiting room it is admitted at
    once. With one (after the draw) it is admitted at once only when nobody is waiting and the room has an
    admission available, which it spends; otherwise it waits for the admission loop."""
    position = last_position + 1
    if not waiting_room:
        return JoinPlacement(position, now + admission, position, tokens, tokens_since)
    if tokens_since is not None and admitted_through == last_position:
        available = tokens_at(tokens=tokens, since=tokens_since, now=now, admit_per_second=rate)
        if available >= 1 - 1e-9:
            return JoinPlacement(position, now + admission, position, available - 1, now)
    return JoinPlacement(position, None, admitted_through, tokens, tokens_since)


def retry_after_seconds(seconds_left: float) -> int:
    """Whole seconds until the join window ends (at least one)."""
    return max(1, math.ceil(seconds_left))
