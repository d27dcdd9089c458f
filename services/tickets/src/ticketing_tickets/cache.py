"""This replica's read model for ``GET /api/tickets/:id``: each ticket's JSON body at the newest version seen.

A flash sale is thousands of people reloading the same tickets, and a database read costs the service several
times the rest of the request (bench/README.md), so a replica keeps the bodies in memory and keeps them current
from the events every ticket change already publishes (``ticket.created``, ``ticket.updated``: the whole ticket
and its version):

- this process's own commits, applied right after the commit: a replica reads its own writes;
- every replica's commits, from a core NATS subscription to those subjects: another replica's write shows here
  once its outbox publisher has sent it (the outbox backlog metric says when that lags);
- a database read on a miss.

A version never goes back: an event or a read older than what the entry holds changes nothing, whatever order
they arrive in. The cache serves only while the subscription is known to have missed nothing: not before it
exists, not while NATS is disconnected, and everything is dropped on a reconnection (events sent meanwhile were
missed). A read that started before such a drop is not stored. Entries are also re-read after ``ttl`` seconds,
a bound on staleness should an event ever be lost some other way.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from ticketing_common.db import OutboxMessage
from ticketing_common.events import Event, Subject, TicketCreated, TicketUpdated
from ticketing_tickets.schemas import TicketOut

logger = logging.getLogger("ticketing.tickets")

SUBJECTS = (Subject.TICKET_CREATED, Subject.TICKET_UPDATED)

Link = Callable[[], int | None]
"""The state of the event feed: None while it may be missing events, else a number that changes whenever it
restarted (NATS' reconnection count)."""


@dataclass(slots=True)
class _Entry:
    version: int
    body: bytes
    stored_at: float


def render(ticket: TicketOut) -> bytes:
    """The JSON body of a ticket, as the API sends it."""
    return ticket.model_dump_json(by_alias=True).encode()


def from_event(event: Event) -> TicketOut | None:
    """The ticket an event describes, or None for an event that is not about a ticket's state."""
    if isinstance(event, TicketCreated | TicketUpdated):
        # ticket.created carries no orderId: a new ticket is held by no order.
        return TicketOut.model_validate({"order_id": None, **event.model_dump()})
    return None


class TicketCache:
    """Bodies of tickets by id, newest version wins, least recently used dropped beyond ``max_entries``."""

    def __init__(self, *, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._link: Link | None = None
        self._feed_generation: int | None = None
        self.epoch = 0  # bumped by every drop; a read stores its result only if no drop happened meanwhile

    def __len__(self) -> int:
        return len(self._entries)

    def follow(self, link: Link) -> None:
        """Start serving: the events reach :meth:`apply` from now on, as long as ``link`` says so."""
        self._link = link
        self._feed_generation = None
        self._usable()

    def get(self, ticket_id: uuid.UUID) -> bytes | None:
        """The body to serve, or None: read the database, then :meth:`offer` what was read."""
        if not self._usable():
            return None
        entry = self._entries.get(ticket_id)
        if entry is None:
            return None
        if self._clock() - entry.stored_at > self._ttl:
            del self._entries[ticket_id]
            return None
        self._entries.move_to_end(ticket_id)
        return entry.body

    def offer(self, ticket: TicketOut, *, epoch: int) -> bytes:
        """Store a ticket read from the database after :attr:`epoch` was ``epoch``; returns its body."""
        body = render(ticket)
        if self._usable() and epoch == self.epoch:
            self._store(ticket.id, ticket.version, body, refresh=True)
        return body

    def apply(self, ticket: TicketOut) -> None:
        """A committed change (from an event): the ticket at that version."""
        if self._usable():
            self._store(ticket.id, ticket.version, render(ticket), refresh=False)

    def apply_events(self, events: Sequence[Event]) -> None:
        for event in events:
            if (ticket := from_event(event)) is not None:
                self.apply(ticket)

    def apply_committed(self, messages: Sequence[OutboxMessage]) -> None:
        """A commit watcher (``Database.watch_commits``): the events a unit of work of this process committed."""
        self.apply_events([message.event for message in messages if message.event is not None])

    async def on_message(self, msg: Msg) -> None:
        """Callback of the core NATS subscription to :data:`SUBJECTS`."""
        event_type: type[Event] = TicketCreated if msg.subject == Subject.TICKET_CREATED else TicketUpdated
        try:
            event = event_type.model_validate_json(msg.data)
        except ValidationError as exc:
            # Not stored, and no version of it can be trusted: forget the cache rather than risk a stale entry.
            logger.warning("unreadable ticket event, cache dropped", extra={"error": repr(exc)})
            self.clear()
            return
        self.apply_events([event])

    def clear(self) -> None:
        self._entries.clear()
        self.epoch += 1

    def _store(self, ticket_id: uuid.UUID, version: int, body: bytes, *, refresh: bool) -> None:
        entry = self._entries.get(ticket_id)
        if entry is not None and (entry.version > version or (entry.version == version and not refresh)):
            return
        self._entries[ticket_id] = _Entry(version, body, self._clock())
        self._entries.move_to_end(ticket_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def _usable(self) -> bool:
        if self._link is None:
            return False
        generation = self._link()
        if generation is not None and generation == self._feed_generation:
            return True
        # Disconnected now (events may be missed) or reconnected since the last look (they may have been).
        if self._entries or generation != self._feed_generation:
            self.clear()
        self._feed_generation = generation
        return generation is not None


async def follow_ticket_events(cache: TicketCache, nc: NATS) -> None:
    """Subscribe ``cache`` to every replica's ticket events, then let it serve.

    Unbounded pending limits: nats-py drops messages for a subscription over its limits (a "slow consumer"),
    which would go unnoticed here; the callback is a dictionary update, so the queue stays short anyway.
    """
    for subject in SUBJECTS:
        await nc.subscribe(subject, cb=cache.on_message, pending_msgs_limit=0, pending_bytes_limit=0)
    await nc.flush()
    cache.follow(lambda: nc.stats["reconnects"] if nc.is_connected else None)
