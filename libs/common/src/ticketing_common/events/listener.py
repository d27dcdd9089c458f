"""The listener base class and the runner that feeds it, in batches, from a durable JetStream pull consumer.

A service's listener is a few lines: name the event type and write ``handle`` (and, on a hot path,
``handle_batch`` set-based). The runner guarantees:

- one durable consumer per (service, subject), shared by every replica, so each event goes to one replica;
- it keeps pull requests open for many messages and takes what has arrived without lingering: at low load a
  batch is one event, under load up to ``batch_size``;
- a batch is one unit of work: the event ids are claimed in ``processed_events`` in one statement (a redelivered
  event is acknowledged without effect), the listener applies the fresh ones, the transaction commits once, then
  every message is acknowledged;
- if anything in a batch fails, the batch is replayed one event at a time on the same code, so one bad event
  affects only itself;
- ``raise NotYet()`` (an event ahead of the local copy's version) redelivers that message later, with backoff;
- a message that keeps failing is parked in ``parked_messages`` after a bounded number of deliveries, logged,
  and acknowledged so the rest keep flowing. An unreachable database is never a reason to park;
- a retry or a parking is logged; a batch only when slow or sampled (``RoutineLog``); outcomes are counted in
  ``events_handled_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Generic, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError as ConsumerNotFound
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from ticketing_common import tracing
from ticketing_common.db import Database, UnitOfWork, is_connection_error
from ticketing_common.events.catalogue import Event
from ticketing_common.logging import DEFAULT_SLOW_SECONDS, RoutineLog
from ticketing_common.metrics import Metrics

logger = logging.getLogger("ticketing.events")

E = TypeVar("E", bound=Event)

MAX_BACKOFF_SECONDS = 5.0
NOT_YET_MAX_DELIVERIES = 60
BATCH_SIZE = 256
PULL_EXPIRES_SECONDS = 5.0
MAX_ACK_PENDING = 2000

CLAIM_EVENTS = """
INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::text[])
ON CONFLICT DO NOTHING RETURNING event_id
"""
PARK = """
INSERT INTO parked_messages (consumer, subject, event_id, data, headers, error, deliveries)
SELECT $1::text, $2::text, $3::text, $4::text, $5::jsonb, $6::text, $7::int
WHERE NOT EXISTS (SELECT FROM parked_messages WHERE consumer = $1::text AND event_id = $3::text)
"""


class NotYet(Exception):
    """Raised by a handler when the event cannot be applied yet (e.g. an earlier version is missing)."""


def is_next_version(current: int | None, incoming: int) -> bool:
    """Version gate for replicas: True to apply ``incoming`` (exactly ``current + 1``), False when it was
    already applied (behind: acknowledge without effect); raises :class:`NotYet` when it is ahead of the copy
    or the copy does not exist yet, so the message is redelivered later."""
    if current is None or incoming > current + 1:
        raise NotYet(f"version {incoming} is ahead of local version {current}")
    return incoming == current + 1


@dataclass(frozen=True)
class EventContext:
    """Where a delivered event came from."""

    event_id: str
    subject: str
    deliveries: int
    published_at: datetime | None


class Listener(ABC, Generic[E]):
    """Subclass, set ``event`` to a catalogue payload class, and implement :meth:`handle`."""

    event: ClassVar[type[Event]]

    @abstractmethod
    async def handle(self, event: E, uow: UnitOfWork) -> None:
        """Apply the event inside ``uow``'s transaction; never commit here."""

    async def handle_batch(self, events: Sequence[E], uow: UnitOfWork) -> None:
        """Apply several events in one transaction. One by one by default; a hot listener overrides this with
        set-based statements. Raising replays the batch one event at a time through :meth:`handle`."""
        for event in events:
            await self.handle(event, uow)

    async def committed(self, event: E) -> None:
        """Called once the event's transaction has committed (not for a duplicate); must not raise."""

    @property
    def subject(self) -> str:
        return str(self.event.subject)


def durable_name(service: str, subject: str) -> str:
    return f"{service}-{subject.replace('.', '-').replace('>', 'all').replace('*', 'any')}"


def backoff_seconds(deliveries: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 0.05 * 2 ** max(0, deliveries - 1)))


@dataclass(frozen=True)
class Delivery:
    """A delivered message and its decoded event."""

    msg: Msg
    event: Event
    context: EventContext


class PullFeed:
    """Keeps pull requests open on a durable consumer for up to ``batch_size`` messages and collects what
    arrives, so taking a batch never waits for a round trip to the server nor lingers for a full one."""

    def __init__(self, nc: NATS, *, stream: str, consumer: str, batch_size: int) -> None:
        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._batch_size = batch_size
        self._request = json.dumps({"batch": batch_size, "expires": int(PULL_EXPIRES_SECONDS * 1e9)}).encode()
        self._open: deque[list[float]] = deque()  # [messages it may still deliver, when it expires], oldest first
        self._arrived: deque[Msg] = deque()
        self._ready = asyncio.Event()
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)
        await self._top_up()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def take(self, limit: int) -> list[Msg]:
        """What has arrived (up to ``limit``), waiting only while nothing has."""
        while not self._arrived:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PULL_EXPIRES_SECONDS):
                    await self._ready.wait()
            await self._top_up()  # requests lost in a reconnection have expired by now: open new ones
        count = min(limit, len(self._arrived))
        return [self._arrived.popleft() for _ in range(count)]

    async def _on_message(self, msg: Msg) -> None:
        if msg.headers and "Status" in msg.headers:
            # 408 (expired), 409 (...): a request is over. One inbox serves them all: count the oldest as done.
            if self._open:
                self._open.popleft()
        else:
            self._arrived.append(msg)
            self._ready.set()
            if self._open:
                self._open[0][0] -= 1
                if self._open[0][0] <= 0:
                    self._open.popleft()
        await self._top_up()

    async def _top_up(self) -> None:
        now = time.monotonic()
        while self._open and self._open[0][1] < now:
            self._open.popleft()
        # Half a batch still requested is plenty: the server delivers as fast as the consumer lets it.
        while sum(request[0] for request in self._open) < self._batch_size // 2 and self._nc.is_connected:
            self._open.append([self._batch_size, now + PULL_EXPIRES_SECONDS - 0.5])
            await self._nc.publish(self._next_subject, self._request, reply=self._inbox)


class ListenerRunner:
    """Pulls one listener's messages and applies them in batches until cancelled."""

    def __init__(
        self,
        listener: Listener[Event],
        *,
        service: str,
        js: JetStreamContext,
        stream: str,
        db: Database,
        metrics: Metrics | None = None,
        max_deliveries: int = 10,
        ack_wait: float = 30.0,
        concurrency: int = 1,
        batch_size: int = BATCH_SIZE,
        slow_seconds: float = DEFAULT_SLOW_SECONDS,
        sample_every: int = 0,
    ) -> None:
        self.listener = listener
        self.service = service
        self.consumer = durable_name(service, listener.subject)
        self._js = js
        self._stream = stream
        self._db = db
        self._metrics = metrics
        self._max_deliveries = max_deliveries
        self._ack_wait = ack_wait
        self._concurrency = max(1, concurrency)
        self._batch_size = max(1, batch_size)
        self._routine = RoutineLog(logger, slow_seconds=slow_seconds, sample_every=sample_every)
        self._stopped = False

    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self._stopped = True

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.consumer,
            filter_subject=self.listener.subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._ack_wait,
            max_ack_pending=MAX_ACK_PENDING,
        )

    async def run(self) -> None:
        """Consume until cancelled, surviving NATS and database outages.

        ``concurrency`` workers take batches from one feed, like that many replicas in one process, so a slow
        transaction does not hold up the events behind it; what arrives while they are busy makes the next batch.
        Order between batches is not guaranteed, which the version gates and the inbox already make harmless.
        """
        await self._ensure_consumer()
        feed = PullFeed(self._js._nc, stream=self._stream, consumer=self.consumer, batch_size=self._batch_size)
        await feed.start()
        try:
            await asyncio.gather(*(self._work(feed) for _ in range(self._concurrency)))
        finally:
            await feed.stop()

    async def _ensure_consumer(self) -> None:
        while True:
            try:
                try:
                    await self._js.consumer_info(self._stream, self.consumer)
                except ConsumerNotFound:
                    await self._js.add_consumer(self._stream, self.consumer_config())
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cannot create consumer yet", extra={"consumer": self.consumer, "error": repr(exc)})
                await asyncio.sleep(1.0)

    async def _work(self, feed: PullFeed) -> None:
        while not self._stopped:
            messages = await feed.take(self._batch_size)
            try:
                await self.process_batch(messages)
            except Exception as exc:
                # Settling failed (NATS went away mid-batch): unacknowledged messages come back after ack_wait.
                logger.warning("cannot settle a batch", extra={"consumer": self.consumer, "error": repr(exc)})

    async def process_batch(self, messages: Sequence[Msg]) -> list[str]:
        """Apply delivered messages in one transaction and settle each (ack, nak or park); falls back to one at a
        time when the batch fails. Returns each message's outcome, in order."""
        started = time.perf_counter()
        outcomes: list[str] = [""] * len(messages)
        deliveries: list[tuple[int, Delivery]] = []  # with each one's place in ``messages``
        for index, msg in enumerate(messages):
            context = self._context(msg)
            try:
                event = self.listener.event.model_validate_json(msg.data)
            except ValidationError as exc:
                outcomes[index] = await self._settle(msg, context, await self._park(msg, context, exc), exc)
            else:
                deliveries.append((index, Delivery(msg, event, context)))
        if len(deliveries) > 1:
            try:
                fresh = await self._apply([delivery for _, delivery in deliveries])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("batch failed; replaying it one event at a time", extra={"error": repr(exc)})
            else:
                await self._acknowledge([delivery for _, delivery in deliveries], fresh)
                fresh_ids = {id(delivery) for delivery in fresh}
                for index, delivery in deliveries:
                    outcomes[index] = "ok" if id(delivery) in fresh_ids else "duplicate"
                self._log_batch(len(deliveries), time.perf_counter() - started)
                return outcomes
        for index, delivery in deliveries:
            outcomes[index] = await self.process(delivery)
        return outcomes

    async def process(self, delivery: Delivery) -> str:
        """Apply one delivered event on its own and settle it; returns the outcome."""
        started = time.perf_counter()
        msg, context = delivery.msg, delivery.context
        error: BaseException | None = None
        try:
            fresh = await self._apply([delivery])
            await self._acknowledge([delivery], fresh)
            outcome = "ok" if fresh else "duplicate"
        except NotYet as exc:
            error = exc
            if context.deliveries >= NOT_YET_MAX_DELIVERIES:
                outcome = await self._park(msg, context, exc)
            else:
                outcome = "not_yet"
                await msg.nak(delay=backoff_seconds(context.deliveries))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
            if is_connection_error(exc):
                await self._db.connection_failed()
            if is_connection_error(exc) or context.deliveries < self._max_deliveries:
                outcome = "retry"
                await msg.nak(delay=backoff_seconds(context.deliveries))
            else:
                outcome = await self._park(msg, context, exc)
        return await self._settle(msg, context, outcome, error, time.perf_counter() - started)

    async def _settle(
        self, msg: Msg, context: EventContext, outcome: str, error: BaseException | None, duration: float = 0.0
    ) -> str:
        """Count and log one event's outcome (a success was counted when it was acknowledged)."""
        if outcome not in ("ok", "duplicate") and self._metrics is not None:
            self._metrics.events_handled.labels(self.listener.subject, outcome).inc()
        level = logging.WARNING if outcome in ("retry", "parked") else self._routine.level(duration)
        if level is not None:
            logger.log(
                level,
                "event",
                extra={
                    "consumer": self.consumer,
                    "subject": msg.subject,
                    "event_id": context.event_id,
                    "outcome": outcome,
                    "deliveries": context.deliveries,
                    "duration_ms": round(duration * 1000, 2),
                    **({"error": repr(error)} if error is not None and outcome != "not_yet" else {}),
                },
            )
        return outcome

    def _log_batch(self, size: int, duration: float) -> None:
        level = self._routine.level(duration)
        if level is not None:
            logger.log(
                level,
                "event batch",
                extra={"consumer": self.consumer, "size": size, "duration_ms": round(duration * 1000, 2)},
            )

    def _context(self, msg: Msg) -> EventContext:
        headers = msg.headers or {}
        metadata = msg.metadata
        # ce-id names the event; Nats-Msg-Id equals it for our publishers (JetStream's dedup key).
        event_id = headers.get("ce-id") or headers.get("Nats-Msg-Id") or f"{self._stream}:{metadata.sequence.stream}"
        return EventContext(event_id, msg.subject, metadata.num_delivered, _parse_time(headers.get("ce-time")))

    async def _apply(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """One transaction: claim the event ids, apply the fresh events; returns the fresh ones."""
        unique: dict[str, Delivery] = {}
        for delivery in deliveries:
            unique.setdefault(delivery.context.event_id, delivery)  # the same event twice in a batch: once
        async with self._db.unit_of_work() as uow:
            claimed = {row[0] for row in await uow.conn.fetch(CLAIM_EVENTS, self.consumer, list(unique))}
            fresh = [delivery for event_id, delivery in unique.items() if event_id in claimed]
            if len(fresh) > 1 and any(tracing.is_sampled(delivery.msg.headers) for delivery in fresh):
                # One span per event, each continuing the trace of whoever staged it (so no set-based batch).
                for delivery in fresh:
                    with self._span(delivery):
                        await self.listener.handle(delivery.event, uow)
            elif fresh:
                # Unsampled, a batch stays set-based; what it stages carries the first event's unrecorded context.
                with self._span(fresh[0]) if tracing.tracer is not None else contextlib.nullcontext():
                    if len(fresh) == 1:
                        await self.listener.handle(fresh[0].event, uow)
                    else:
                        await self.listener.handle_batch([delivery.event for delivery in fresh], uow)
        return fresh

    def _span(self, delivery: Delivery) -> AbstractContextManager[object]:
        return tracing.span(
            f"{delivery.msg.subject} process",
            kind=SpanKind.CONSUMER,
            parent=delivery.msg.headers or {},
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": delivery.msg.subject,
                "messaging.consumer.group.name": self.consumer,
                "messaging.message.id": delivery.context.event_id,
                "messaging.message.delivery_count": delivery.context.deliveries,
            },
        )

    async def _acknowledge(self, deliveries: Sequence[Delivery], fresh: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            await delivery.msg.ack()
        now = time.time()
        for delivery in fresh:
            await self.listener.committed(delivery.event)
            if self._metrics is not None and delivery.context.published_at is not None:
                lag = now - delivery.context.published_at.timestamp()
                self._metrics.event_lag.labels(delivery.msg.subject).observe(max(0.0, lag))
        if self._metrics is not None:
            if fresh:
                self._metrics.events_handled.labels(self.listener.subject, "ok").inc(len(fresh))
            if len(deliveries) > len(fresh):
                self._metrics.events_handled.labels(self.listener.subject, "duplicate").inc(
                    len(deliveries) - len(fresh)
                )

    async def _park(self, msg: Msg, context: EventContext, error: BaseException) -> str:
        try:
            await self._db.pool.execute(
                PARK,
                self.consumer,
                msg.subject,
                context.event_id,
                msg.data.decode(errors="replace"),
                json.dumps(dict(msg.headers or {})),
                repr(error),
                context.deliveries,
            )
        except Exception as exc:
            logger.warning("cannot park message yet", extra={"consumer": self.consumer, "error": repr(exc)})
            await msg.nak(delay=backoff_seconds(context.deliveries))
            return "retry"
        logger.error(
            "message parked",
            extra={"consumer": self.consumer, "event_id": context.event_id, "error": repr(error)},
        )
        await msg.term()
        return "parked"


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
